"""What every vla_ros node shares: the process lifecycle and parameter declaration."""
from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from vla_ros.errors import VlaRosError


def run(make_node: Callable[[], Node], args: list[str] | None = None, graceful_stop: bool = False) -> None:
    """Init ROS, spin the node until Ctrl-C or an external shutdown, then clean up (ros2/examples idiom).

    A VlaRosError while building the node (a bad embodiment file, say) is printed as one line and
    the process exits with status 2. With `graceful_stop`, SIGINT and SIGTERM do not shut ROS down
    at once: the node's close() still runs with ROS up (to ramp a humanoid's arms down, say).
    """
    if graceful_stop:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    options = SignalHandlerOptions.NO if graceful_stop else None
    try:
        with rclpy.init(args=args, signal_handler_options=options):
            try:
                node = make_node()
            except VlaRosError as error:
                print(f"[FATAL] {error}", file=sys.stderr)
                sys.exit(2)
            # Everything built so far lives as long as the node: keep it out of the garbage
            # collector's full passes, which would otherwise stall a control loop for milliseconds.
            gc.collect()
            gc.freeze()
            # rclpy's multi-threaded executor adds milliseconds per callback; nodes that need
            # a steady rate run their loop on a thread of their own instead.
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                if graceful_stop:
                    # Python delivers KeyboardInterrupt between bytecodes: wake up to let it in.
                    while rclpy.ok():
                        executor.spin_once(timeout_sec=0.1)
                else:
                    executor.spin()
            finally:
                close = getattr(node, "close", None)
                if close is not None:
                    close()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def declare(node: Node, name: str, default, description: str, *, read_only: bool = False,
            low: float | None = None, high: float | None = None):
    """Declare a documented parameter (with a range for numbers) and return its value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if low is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    elif low is not None and isinstance(default, int) and not isinstance(default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return node.declare_parameter(name, default, descriptor).value
