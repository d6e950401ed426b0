"""The ROS test harness: real executables in child processes, real DDS, nothing left behind.

- conftest.py gives each pytest session its own ROS_DOMAIN_ID and
  ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST before anything initialises rclpy, so two sessions on one
  machine never hear each other.
- `RosHarness.start()` runs an executable in its own process group, output to a log file;
  `close()` stops them all (SIGINT, then SIGTERM, then SIGKILL).
- Every child carries a token in its environment, inherited by anything it starts;
  `processes_with_token()` finds whatever still carries it, so a test can prove nothing outlived it.
- The test side of the graph is an rclpy node in its own Context, spun with `spin_once` and
  timeouts; waiting never sleeps blindly, and a timeout reports what each child printed.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor

from vla_ros import process
from vla_ros.bringup import NodeSpec, normalize_namespace
from vla_ros.ros.diagnostics import TOPIC, node_name, status_values
from vla_ros.ros.services import call_repeatable

TOKEN_VAR = "VLA_ROS_TEST_TOKEN"
BIN_DIR = Path(sys.executable).parent
SLOW_STOP_S = 5.0  # a node should exit within this of SIGINT; slower stops are reported as warnings


def console_script(name: str) -> str:
    """Path of an installed console script (`vla-ros`, `policy_node`, ...) in this venv."""
    path = BIN_DIR / name
    assert path.is_file(), f"{name} is not installed in {BIN_DIR}: run `make setup`"
    return str(path)


def ros2_run(name: str) -> str:
    """Path of the `ros2 run vla_ros <name>` entry under this venv's prefix (lib/vla_ros)."""
    path = Path(sys.prefix) / "lib" / "vla_ros" / name
    assert path.is_file(), f"{path} is missing: run `make setup`"
    return str(path)


def node_argv(executable: str, namespace: str = "", remappings: Sequence[tuple[str, str]] = (),
              **parameters: bool | int | float | str) -> list[str]:
    """The command running vla_ros node `executable` with `parameters`, as `vla-ros up` starts nodes."""
    return NodeSpec(executable, executable, normalize_namespace(namespace), parameters, tuple(remappings)).argv()


def processes_with_token(token: str) -> list[int]:
    """PIDs of live processes whose environment carries `token` (zombies have none)."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_processes_with_token(token: str, timeout_s: float = 5.0) -> list[str]:
    """SIGKILL every process carrying `token` and wait until they are gone; return their command lines."""
    killed = []
    for pid in processes_with_token(token):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid}: {cmdline.strip()}")
        except OSError:
            continue
    deadline = time.monotonic() + timeout_s
    while processes_with_token(token) and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGKILL is asynchronous; the kernel needs a moment to tear down
    return killed


@dataclass
class NodeProcess:
    """One started executable and where its output goes."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """Stop the process group; return the exit code."""
        return process.stop(self.popen, timeout_s)

    def describe(self, lines: int = 20) -> str:
        state = "running" if self.running() else f"exited with {self.popen.returncode}"
        tail = "\n".join(f"    {line}" for line in self.output().splitlines()[-lines:])
        return f"  {self.name} (pid {self.popen.pid}, {state}):\n{tail}"


class RosHarness:
    """Child processes plus an in-test ROS node, all torn down by close()."""

    def __init__(self, log_dir: Path, token: str | None = None):
        self.token = token or uuid.uuid4().hex
        self.log_dir = log_dir
        self.processes: list[NodeProcess] = []
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_harness_{self.token[:8]}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.statuses: dict[str, dict] = {}  # every node's newest status on /diagnostics, for failure reports
        self.node.create_subscription(DiagnosticArray, TOPIC, self._on_diagnostics, 50)

    def __enter__(self) -> RosHarness:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self, argv: Sequence[str], name: str | None = None, env: dict[str, str] | None = None) -> NodeProcess:
        """Start `argv` with the harness token in its environment (plus `env` overrides)."""
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            raise AssertionError("the test process runs with a real-time scheduling policy, which every child would "
                                 "inherit: something it ran switched its main thread (see os.sched_getscheduler)")
        name = name or Path(argv[0]).name
        log_path = self.log_dir / f"{len(self.processes):02d}-{name}.log"
        child_env = {**os.environ, **(env or {}), TOKEN_VAR: self.token}
        with log_path.open("wb") as log:
            popen = process.spawn(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env)
        started = NodeProcess(name, popen, log_path)
        self.processes.append(started)
        return started

    def start_node(self, executable: str, namespace: str = "", remappings: Sequence[tuple[str, str]] = (),
                   embodiment: str = "arm7", **parameters: bool | int | float | str) -> NodeProcess:
        """Start vla_ros node `executable` (for `embodiment`) with `parameters` and `remappings`."""
        argv = node_argv(executable, namespace, remappings, embodiment=embodiment, **parameters)
        return self.start(argv, name=f"{namespace.strip('/')}_{executable}" if namespace else executable)

    def diagnostics(self) -> Diagnostics:
        """The node statuses on /diagnostics from now on."""
        return Diagnostics(self)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.statuses.update((status.name, status_values(status)) for status in msg.status)

    def describe_processes(self) -> str:
        """Every child's output, then every node's newest status."""
        described = "\n".join(p.describe() for p in self.processes) or "  (no processes started)"
        statuses = "\n".join(f"  {name}: {values}" for name, values in sorted(self.statuses.items()))
        return f"{described}\nnewest statuses on {TOPIC}:\n{statuses or '  (none)'}"

    def spin_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Spin the test node until `condition()` holds; on timeout fail with every child's output."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s:.1f} s waiting for {what}\n{self.describe_processes()}"
                )
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client, request, timeout_s: float = 20.0):
        """The answer to a request that may be repeated; on timeout fail with every child's output.

        The request is sent again while unanswered: see vla_ros/ros/services.py.
        """
        response = call_repeatable(client, request, lambda: self.executor.spin_once(timeout_sec=0.05), timeout_s)
        if response is None:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for an answer from {client.srv_name}\n"
                                 f"{self.describe_processes()}")
        return response

    def subscribe(self, topic: str, msg_type, qos=10) -> list:
        """Start collecting `topic` now; the returned list fills as the node spins."""
        inbox: list = []
        self.node.create_subscription(msg_type, topic, inbox.append, qos)
        return inbox

    def wait_for(self, topic: str, msg_type, timeout_s: float = 15.0,
                 predicate: Callable[[object], bool] = lambda msg: True, qos=10):
        """The first message on `topic` that satisfies `predicate`."""
        inbox = self.subscribe(topic, msg_type, qos)
        matches: list = []

        def matched() -> bool:
            matches.extend(msg for msg in inbox if predicate(msg))
            inbox.clear()
            return bool(matches)

        self.spin_until(matched, timeout_s, f"a matching message on {topic!r}")
        return matches[0]

    def collect(self, topic: str, msg_type, count: int, timeout_s: float = 15.0, qos=10) -> list:
        """The first `count` messages on `topic`."""
        inbox = self.subscribe(topic, msg_type, qos)
        self.spin_until(lambda: len(inbox) >= count, timeout_s, f"{count} messages on {topic!r}")
        return inbox[:count]

    def close(self) -> None:
        """Stop every child (even after a failure in the test body), then the test node."""
        try:
            for started in self.processes:
                began = time.monotonic()
                code = started.stop()
                took = time.monotonic() - began
                if took > SLOW_STOP_S:
                    warnings.warn(f"{started.name} took {took:.1f} s to stop (exit code {code}): it ignored "
                                  "SIGINT, or its ROS shutdown hung\n" + started.describe(lines=5), stacklevel=1)
        finally:
            self.executor.shutdown()
            self.node.destroy_node()
            self.context.try_shutdown()


@contextmanager
def isolated(log_dir: Path) -> Iterator[RosHarness]:
    """A RosHarness whose children are all gone afterwards; a survivor is killed and fails the caller."""
    harness = RosHarness(log_dir)
    try:
        yield harness
    finally:
        harness.close()
        survivors = kill_processes_with_token(harness.token)
        if survivors:
            raise AssertionError("processes outlived the test (now killed):\n" + "\n".join(survivors))


class Diagnostics:
    """Node statuses on /diagnostics, collected from its creation on; `wait` for one that matches."""

    def __init__(self, ros: RosHarness):
        self.ros = ros
        self.inbox = ros.subscribe(TOPIC, DiagnosticArray)
        self.seen: list[tuple[str, dict]] = []  # (status name, values) of every status read so far

    def _read(self) -> None:
        self.seen += [(status.name, status_values(status)) for msg in self.inbox for status in msg.status]
        self.inbox.clear()

    def wait(self, node: str, predicate: Callable[[dict], bool] = lambda status: True, timeout_s: float = 15.0,
             what: str = "a status") -> dict:
        """The first status of `node` from now on that satisfies `predicate`.

        `node` is a name ("/"-qualified when namespaced); the status is a dict as
        vla_ros.ros.diagnostics.status_values gives it.
        """
        name = node if node.startswith("/") else node_name(node)
        self._read()
        checked = [len(self.seen)]
        found: list[dict] = []

        def matched() -> bool:
            self._read()
            fresh, checked[0] = self.seen[checked[0]:], len(self.seen)
            found.extend(values for seen, values in fresh if seen == name and predicate(values))
            return bool(found)

        self.ros.spin_until(matched, timeout_s, f"{what} ({name} on {TOPIC})")
        return found[0]

    def names(self) -> set[str]:
        """The status names seen so far."""
        self._read()
        return {name for name, _ in self.seen}


def free_port() -> int:
    """A TCP port nothing listens on right now (for a server a test restarts on the same port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LISTENING = re.compile(r"listening on ws://\S+:(\d+)")


def start_policy_server(harness: RosHarness, *args: str, port: int = 0, name: str = "policy_server",
                        timeout_s: float = 20.0):
    """Start `vla-ros serve ARGS --port PORT`; (process, port) once it says it is listening."""
    process = harness.start([console_script("vla-ros"), "serve", *args, "--port", str(port)], name=name)
    deadline = time.monotonic() + timeout_s
    while True:
        found = LISTENING.search(process.output())
        if found:
            return process, int(found.group(1))
        if not process.running() or time.monotonic() > deadline:
            raise AssertionError(f"`vla-ros serve` did not say it was listening:\n{process.describe()}")
        time.sleep(0.02)
