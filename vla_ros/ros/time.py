"""builtin_interfaces/Time <-> seconds."""
from builtin_interfaces.msg import Time

STAMP_TOLERANCE_S = 1e-6  # [s] stamps round to nanoseconds on the wire: times this close are the same time


def to_stamp(seconds: float) -> Time:
    """A Time message for `seconds` (>= 0) since the clock's epoch."""
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
