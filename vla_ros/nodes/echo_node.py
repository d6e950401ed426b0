"""Echo std_msgs/String from `ping` to `pong`: the far end of `vla-ros doctor`'s DDS round trip.

Run as `python -m vla_ros.nodes.echo_node --ros-args -r ping:=... -r pong:=...`.
"""
from std_msgs.msg import String

from vla_ros.nodes.base import OK, Report, VlaNode, run
from vla_ros.ros.qos import RELIABLE


class EchoNode(VlaNode):
    """Publishes on `pong` every message it takes on `ping`."""

    def __init__(self):
        super().__init__("vla_ros_echo")
        self.echoed = 0
        self._pong = self.create_publisher(String, "pong", RELIABLE)
        self.create_subscription(String, "ping", self._echo, RELIABLE)

    def _echo(self, msg: String) -> None:
        self._pong.publish(msg)
        self.echoed += 1

    def report(self) -> Report:
        return Report(OK, f"{self.echoed} messages echoed", {"echoed": self.echoed})


def main(args=None):
    run(EchoNode, args)


if __name__ == "__main__":
    main()
