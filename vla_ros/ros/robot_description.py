"""Read the URDF a running robot publishes on /robot_description.

robot_state_publisher publishes the URDF once, as a std_msgs/String on a transient-local topic, so
a subscriber with the same durability that joins later still receives it.
"""
from __future__ import annotations

import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from vla_ros.errors import VlaRosError
from vla_ros.ros.qos import LATCHED


class NoRobotDescription(VlaRosError):
    """Nothing published a robot description on the topic in time."""

    def __init__(self, topic: str, timeout_s: float):
        self.topic, self.timeout_s = topic, timeout_s
        super().__init__(f"no robot description on {topic} within {timeout_s:g} s: start robot_state_publisher "
                         "(same ROS_DOMAIN_ID), name the topic with --from-topic TOPIC, or raise --timeout")


def read_robot_description(topic: str, timeout_s: float) -> str:
    """The URDF (XML text) published on `topic`; NoRobotDescription after `timeout_s` [s] without one."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("vla_ros_robot_description_reader", context=context)
        received: list[str] = []
        node.create_subscription(String, topic, lambda msg: received.append(msg.data), LATCHED)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout_s
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=min(0.1, max(deadline - time.monotonic(), 0.0)))
        executor.shutdown()
        node.destroy_node()
    finally:
        context.try_shutdown()
    if not received:
        raise NoRobotDescription(topic, timeout_s)
    return received[-1]
