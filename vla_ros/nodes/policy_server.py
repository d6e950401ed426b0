"""`policy_server`: a policy backend served over the openpi websocket protocol, as a ROS node.

The same server as `vla-ros serve` (vla_ros/policy/server.py), started the ROS way:

    ros2 run vla_ros policy_server --ros-args -p policy:=builtin -p port:=8000

with the backend's parameters named as policy_node names them, and its connections, requests,
errors, refused clients and answer times on /diagnostics. It subscribes to no topic: clients reach
it over the websocket (an openpi client, or policy_node's `remote` backend on another machine).
The API key is best given in the VLA_ROS_API_KEY variable: anyone on the ROS graph can read a
parameter.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, VlaNode, run
from vla_ros.nodes.policy_node import BackendParams
from vla_ros.params import ParamError, param
from vla_ros.policy.server import API_KEY_VARIABLE, Limits, policy_server, tls_context


@dataclass(frozen=True)
class ServerParams(BackendParams):
    """policy_server's parameters."""

    host: str = param("127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    port: int = param(8000, "port to listen on (openpi's is 8000; 0: any free one)", low=0, high=65535)
    api_key: str = param("", f"refuse clients without 'Authorization: Api-Key KEY' (empty: the {API_KEY_VARIABLE} "
                             "variable's; neither: no key asked)")
    certfile: str = param("", "PEM certificate (chain): serve wss:// (TLS) with keyfile")
    keyfile: str = param("", "the certificate's PEM private key")
    max_connections: int = param(8, "clients served at once; the next is refused (503)", low=1, high=1000)
    idle_timeout_s: float = param(300.0, "close a connection that sends nothing this long [s]", low=0.1,
                                  high=86400.0)
    max_message_mb: float = param(0.0, "the largest message taken [MB]; larger closes the connection (0: from "
                                        "the metadata)", low=0.0, high=4096.0)

    def check(self) -> None:
        if bool(self.certfile) != bool(self.keyfile):
            raise ParamError("certfile", self.certfile, "TLS needs both certfile and keyfile")


class PolicyServerNode(VlaNode):
    """Runs the websocket server on a loop thread of its own and reports on it."""

    params_type = ServerParams

    def __init__(self):
        super().__init__("policy_server")
        embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = embodiment.name
        params = self.params
        tls = tls_context(params.certfile, params.keyfile) if params.certfile else None
        limits = Limits(params.max_connections, params.idle_timeout_s, round(params.max_message_mb * 1e6))
        self.server = policy_server(params.policy, embodiment, params.backend(), params.host, params.port,
                                    params.api_key or os.environ.get(API_KEY_VARIABLE, ""), tls, limits)
        self.listening = ""
        self.start_loop(self._serve, "websocket_server")

    def _serve(self) -> None:
        asyncio.run(self.server.serve(ready=self._ready))

    def _ready(self, port: int) -> None:
        self.listening = f"{self.server.scheme}://{self.params.host}:{port}"
        self.get_logger().info(f"listening on {self.listening}: {self.params.policy} for {self.hardware_id}")

    def report(self) -> Report:
        server = self.server
        values = {"backend": self.params.policy, "url": self.listening, "connections": server.connections,
                  "requests": server.requests, "errors": server.errors,
                  **{f"refused_{why}": count for why, count in server.refused.items()},
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
