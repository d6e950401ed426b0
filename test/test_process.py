"""Child processes (vla_ros.process): logged or echoed, deaths reported, nothing left running.

Output goes to log files or is echoed line by line; a death is reported with the child's last
lines; nothing is left running once the group is stopped.
"""
import os
import sys
import time

import pytest

from vla_ros.process import ChildDied, ProcessGroup

PRINT_THEN_EXIT = "import sys\nfor i in range(300): print('line', i)\nsys.exit(3)"
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)"


@pytest.mark.parametrize("echoed", [False, True])
def test_a_dead_child_is_reported_with_its_last_lines_and_the_rest_are_stopped(tmp_path, echoed):
    heard = []
    group = ProcessGroup(echo=lambda name, line: heard.append((name, line))) if echoed else ProcessGroup(tmp_path)
    with group:
        sleeper = group.start("sleeper", [sys.executable, "-c", SLEEPER])
        log = tmp_path / "sleeper.log"
        deadline = time.monotonic() + 60  # a safety net: the loop ends when the sleeper has said it is up
        while ("sleeper", "up") not in heard and not (log.exists() and "up" in log.read_text()):
            assert time.monotonic() < deadline, "the sleeper never came up"
            time.sleep(0.05)
        group.start("talker", [sys.executable, "-c", PRINT_THEN_EXIT])
        group.children["talker"].wait(timeout=30)
        with pytest.raises(ChildDied) as died:
            group.check()
        codes = group.stop_all()
    assert died.value.name == "talker" and died.value.returncode == 3
    assert died.value.tail.splitlines() == [f"line {i}" for i in range(280, 300)]
    assert codes["talker"] == 3 and sleeper.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(sleeper.pid, 0)
    if echoed:
        assert [line for name, line in heard if name == "talker"] == [f"line {i}" for i in range(300)]
        assert ("sleeper", "up") in heard
    else:
        assert (tmp_path / "talker.log").read_text().count("\n") == 300


def test_a_group_takes_log_files_or_an_echo_not_both():
    with pytest.raises(ValueError, match="log files or echoes"):
        ProcessGroup()
    with pytest.raises(ValueError, match="log files or echoes"):
        ProcessGroup("/tmp", echo=print)
