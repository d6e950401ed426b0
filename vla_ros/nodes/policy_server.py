"""`policy_server`: a policy backend served over the openpi websocket protocol, as a ROS node.

The same server as `vla-ros serve` (vla_ros/policy/server.py), started the ROS way:

    ros2 run vla_ros policy_server --ros-args -p policy:=builtin -p port:=8000

with the backend's parameters named as policy_node names them, and its connections, requests,
errors and answer times on /diagnostics. It subscribes to no topic: clients reach it over the
websocket (an openpi client, or policy_node's `remote` backend on another machine).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, VlaNode, run
from vla_ros.nodes.policy_node import BackendParams
from vla_ros.params import param
from vla_ros.policy.server import policy_server


@dataclass(frozen=True)
class ServerParams(BackendParams):
    """policy_server's parameters."""

    host: str = param("0.0.0.0", "address to listen on")
    port: int = param(8000, "port to listen on (openpi's is 8000; 0: any free one)", low=0, high=65535)


class PolicyServerNode(VlaNode):
    """Runs the websocket server on a loop thread of its own and reports on it."""

    params_type = ServerParams

    def __init__(self):
        super().__init__("policy_server")
        embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = embodiment.name
        self.server = policy_server(self.params.policy, embodiment, self.params.backend(), self.params.host,
                                    self.params.port)
        self.listening = ""
        self.start_loop(self._serve, "websocket_server")

    def _serve(self) -> None:
        asyncio.run(self.server.serve(ready=self._ready))

    def _ready(self, port: int) -> None:
        self.listening = f"ws://{self.params.host}:{port}"
        self.get_logger().info(f"listening on {self.listening}: {self.params.policy} for {self.hardware_id}")

    def report(self) -> Report:
        server = self.server
        values = {"backend": self.params.policy, "url": self.listening, "connections": server.connections,
                  "requests": server.requests, "errors": server.errors,
                  "answer_p50_ms": f"{server.infer_s.percentile(50) * 1e3:.1f}"}
        if not self.listening:
            return Report(WARN, "not listening yet", values)
        return Report(OK, f"serving {self.params.policy} on {self.listening} to {server.connections} clients", values)

    def close(self) -> None:
        self.server.stop()
        super().close()


def main(args=None):
    run(PolicyServerNode, args)


if __name__ == "__main__":
    main()
