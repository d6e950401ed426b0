"""Reading the nodes' statuses off /diagnostics.

Every vla_ros node publishes its status on the absolute /diagnostics, named after its fully
qualified name (`/policy_node`, `/robot1/policy_node`; vla_ros.nodes.base). Readers (`vla-ros
eval`, `demo`, the benchmarks, the tests) take a status as a dict: its key-value pairs plus
`level` (0 OK, 1 WARN, 2 ERROR) and `message`.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

TOPIC = "/diagnostics"


def status_values(status: DiagnosticStatus) -> dict[str, object]:
    """A status as its values (strings) plus `level` (int) and `message`."""
    return {**{kv.key: kv.value for kv in status.values}, "level": int.from_bytes(status.level, "little"),
            "message": status.message}


def node_name(name: str, namespace: str = "") -> str:
    """The fully qualified name of node `name` in `namespace` ("" or "/" for none), as statuses carry it."""
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else f"/{name}"
