"""Echo std_msgs/String from `ping` to `pong`: the far end of `vla-ros doctor`'s DDS round trip.

Run as `python -m vla_ros.nodes.echo_node --ros-args -r ping:=... -r pong:=...`.
"""
from rclpy.node import Node
from std_msgs.msg import String

from vla_ros.nodes.common import run


class EchoNode(Node):
    def __init__(self):
        super().__init__("vla_ros_echo")
        self._pong = self.create_publisher(String, "pong", 10)
        self.create_subscription(String, "ping", self._pong.publish, 10)


def main(args=None):
    run(EchoNode, args)


if __name__ == "__main__":
    main()
