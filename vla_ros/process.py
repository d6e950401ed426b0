"""Child processes that can always be stopped: own process group, escalating signals."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence


def spawn(argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """Start `argv` in a new session, so stop() reaches it and every process it starts."""
    return subprocess.Popen(list(argv), start_new_session=True, **popen_kwargs)


def stop(process: subprocess.Popen, timeout_s: float = 5.0) -> int:
    """Stop a spawn()ed process group: SIGINT (clean ROS shutdown), then SIGTERM, then SIGKILL.

    Each signal gets `timeout_s` to work; then whatever is left of the group is SIGKILLed and
    reaped. Returns the exit code of the group leader.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while children it started live on in the group: kill them and wait
    # until the group is empty, so that "stopped" means no process of it is left.
    deadline = time.monotonic() + timeout_s
    try:
        os.killpg(process.pid, signal.SIGKILL)
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)
            time.sleep(0.01)
    except ProcessLookupError:
        pass
    return process.wait()
