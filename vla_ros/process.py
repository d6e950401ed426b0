"""Child processes that can always be stopped: own process group, escalating signals, logs."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from vla_ros.errors import VlaRosError

ECHO_LINES_KEPT = 200  # of an echoed child's output, for output()


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
    """Named child processes, each in its own process group.

    Their output goes to a log file per child or, with `echo`, line by line to `echo(name, line)`
    as it comes.

    Use as a context manager: leaving it stops every child (SIGINT, then harder), also on errors.
    """

    def __init__(self, log_dir: Path | None = None, env: dict[str, str] | None = None,
                 echo: Callable[[str, str], None] | None = None):
        if (log_dir is None) == (echo is None):
            raise ValueError("a ProcessGroup writes its children's output to log files or echoes it: give one")
        self.log_dir = Path(log_dir) if log_dir is not None else None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.echo = echo
        self.children: dict[str, subprocess.Popen] = {}
        self.recent: dict[str, deque[str]] = {}
        self.readers: list[threading.Thread] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        merged = {**os.environ, **(self.env or {}), **(env or {})}
        if self.log_dir is None:
            child = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=merged)
            self.recent[name] = deque(maxlen=ECHO_LINES_KEPT)
            reader = threading.Thread(target=self._echo, args=(name, child.stdout), daemon=True)
            reader.start()
            self.readers.append(reader)
        else:
            with (self.log_dir / f"{name}.log").open("wb") as output:
                child = spawn(argv, stdout=output, stderr=subprocess.STDOUT, env=merged)
        self.children[name] = child
        return child

    def _echo(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.recent[name].append(line)
            self.echo(name, line)
        stream.close()

    def output(self, name: str, lines: int = 20) -> str:
        """The last `lines` lines a child wrote."""
        if self.log_dir is None:
            text = list(self.recent[name])
        else:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check(self) -> None:
        """Raise ChildDied for the first child that has exited."""
        for name, child in self.children.items():
            if child.poll() is not None:
                raise ChildDied(name, child.returncode, self.output(name))

    def stop_all(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Stop every child, the last started first (consumers before what feeds them).

        Returns their exit codes. Echoed output is drained before this returns.
        """
        codes = {name: stop(child, timeout_s) for name, child in reversed(list(self.children.items()))}
        for reader in self.readers:
            reader.join(timeout=2.0)
        return codes
