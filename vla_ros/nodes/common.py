"""What every vla_ros node shares: the process lifecycle and the pending-node stand-in."""
from __future__ import annotations

from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from vla_ros.ros.diagnostics import ERROR, diagnostic_array


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Init ROS, spin the node until Ctrl-C or an external shutdown, then clean up (ros2/examples idiom)."""
    try:
        with rclpy.init(args=args):
            node = make_node()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


class PendingNode(Node):
    """A real node for an executable whose behaviour a later issue builds.

    It does nothing but say so: a warning at start and an ERROR diagnostic at 1 Hz, so that
    `ros2 run` works and monitoring shows clearly that this part of the graph is not there yet.
    """

    def __init__(self, name: str, issue: int):
        super().__init__(name)
        self._message = f"not configured yet: {name} is built in issue #{issue}"
        self._diagnostics = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.get_logger().warning(self._message)
        self.create_timer(1.0, self._report)

    def _report(self) -> None:
        self._diagnostics.publish(
            diagnostic_array(
                self.get_clock().now().to_msg(), f"vla_ros/{self.get_name()}", ERROR, self._message
            )
        )
