"""Child processes that can always be stopped: own process group, escalating signals, logs."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from vla_ros.errors import VlaRosError


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


class ChildDied(VlaRosError):
    """A child process of a ProcessGroup exited while it was needed."""

    def __init__(self, name: str, returncode: int, tail: str):
        self.name, self.returncode, self.tail = name, returncode, tail
        super().__init__(f"{name} exited with status {returncode}:\n{tail}")


class ProcessGroup:
    """Named child processes, each in its own process group with its output in a log file.

    Use as a context manager: leaving it stops every child (SIGINT, then harder), also on errors.
    """

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.children: dict[str, tuple[subprocess.Popen, Path]] = {}

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        merged = {**os.environ, **(self.env or {}), **(env or {})}
        with log.open("wb") as output:
            child = spawn(argv, stdout=output, stderr=subprocess.STDOUT, env=merged)
        self.children[name] = (child, log)
        return child

    def output(self, name: str, lines: int = 20) -> str:
        text = self.children[name][1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check(self) -> None:
        """Raise ChildDied for the first child that has exited."""
        for name, (child, _) in self.children.items():
            if child.poll() is not None:
                raise ChildDied(name, child.returncode, self.output(name))

    def stop_all(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Stop every child; returns their exit codes."""
        return {name: stop(child, timeout_s) for name, (child, _) in self.children.items()}
