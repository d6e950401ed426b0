"""builtin_interfaces/Time <-> seconds."""
from builtin_interfaces.msg import Time


def to_stamp(seconds: float) -> Time:
    """A Time message for `seconds` (>= 0) since the clock's epoch."""
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
