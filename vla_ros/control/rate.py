"""Keeping a steady loop rate in Python. No ROS.

`PreciseRate` sleeps to absolute deadlines on the monotonic clock (a period never drifts by
the loop's own work) with the thread's timer slack cut to 1 us: Linux otherwise lets a sleep
end up to 50 us late to batch wake-ups. A loop that falls more than `max_lag` periods behind
skips ahead and counts an overrun instead of bursting to catch up. The deadlines start at
`start()` (or the first `sleep()`), not when the rate is made: a loop that begins late does
not burst through the periods before it began.
"""
from __future__ import annotations

import ctypes
import os
import time

PR_SET_TIMERSLACK = 29


def set_timer_slack(nanoseconds: int = 1000) -> bool:
    """Cut the calling thread's timer slack (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(nanoseconds), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_realtime_priority(priority: int) -> str | None:
    """Run the calling thread under SCHED_FIFO at `priority` (1-99), as ros2_control's loop does.

    Returns None on success, else why not (no permission: raise the rtprio limit, e.g.
    `@realtime - rtprio 98` in /etc/security/limits.conf, or run with CAP_SYS_NICE).
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return None
    except (OSError, AttributeError) as error:
        return (f"SCHED_FIFO priority {priority} refused ({error}); the loop runs with normal priority. "
                "Allow it with an rtprio limit (/etc/security/limits.conf) or CAP_SYS_NICE")


class PreciseRate:
    """Absolute-deadline pacing at `rate_hz` on time.monotonic().

    Attributes:
        period_s: the nominal period [s].
        overruns: how many times the loop fell `max_lag` periods behind and skipped ahead.
    """

    def __init__(self, rate_hz: float, max_lag: int = 5):
        self.period_s = 1.0 / rate_hz
        self.max_lag = max_lag
        self.overruns = 0
        self.deadline: float | None = None

    def start(self) -> None:
        """Count the periods from now."""
        self.deadline = time.monotonic()

    def sleep(self) -> float:
        """Sleep until the next deadline; returns how late [s] the wake-up was (>= 0)."""
        if self.deadline is None:
            self.start()
        self.deadline += self.period_s
        now = time.monotonic()
        if now < self.deadline:
            time.sleep(self.deadline - now)
            now = time.monotonic()
        late = now - self.deadline
        if late > self.max_lag * self.period_s:
            self.overruns += 1
            self.deadline = now
        return late
