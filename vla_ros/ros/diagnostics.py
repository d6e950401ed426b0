"""Build diagnostic_msgs/DiagnosticArray messages from plain values."""
from __future__ import annotations

from collections.abc import Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE


def diagnostic_array(
    stamp: Time, name: str, level: bytes, message: str, values: Mapping[str, object] | None = None
) -> DiagnosticArray:
    """One DiagnosticStatus named `name` (e.g. "vla_ros/policy_node") wrapped in an array.

    `values` become KeyValue pairs, each value formatted with str().
    """
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id="")
    status.values = [KeyValue(key=key, value=str(value)) for key, value in (values or {}).items()]
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
