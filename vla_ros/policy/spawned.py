"""A backend run by `vla-ros serve` in a child process of another Python, driven as a `remote` policy.

For backends whose libraries live in an environment of their own (LeRobot pins a torch the main
venv cannot hold beside its own): the child runs `<python> -m vla_ros.cli serve --backend NAME`
on a free loopback port; this process talks to it through RemotePolicy, so the child is the
only one that imports the backend's libraries. The child never outlives this process: close()
stops it, so does an atexit hook, and the kernel sends it SIGTERM should this process die
without either (PR_SET_PDEATHSIG, Linux).
"""
from __future__ import annotations

import atexit
import copy
import ctypes
import json
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping

import numpy as np

from vla_ros.embodiment import Embodiment
from vla_ros.policy.interface import ActionChunk, BackendUnavailable, Observation, Policy, PolicyError
from vla_ros.policy.remote import RemotePolicy
from vla_ros.process import spawn, stop

STARTUP_TIMEOUT_S = 300.0  # importing torch and loading a multi-GB model on a CPU
REQUEST_TIMEOUT_S = 60.0  # a large model on a CPU
OUTPUT_LINES_KEPT = 50  # of the child's output, for the error that says why it stopped
READY = "listening on "  # `vla-ros serve`'s line once it listens
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGTERM when its parent dies (precisely: the thread that started it)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork, called in the child

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


class SpawnedPolicy(Policy):
    """Backend `backend_name` served by a child `python`, reached as a RemotePolicy on loopback."""

    def __init__(self, python: str, backend_name: str, embodiment: Embodiment, params: Mapping[str, object],
                 env: Mapping[str, str] | None = None):
        """Start the child and connect; PolicyError with the child's own message if it stops first.

        Args:
            python: the interpreter of the environment the backend runs in.
            backend_name: the backend the child serves.
            embodiment: passed to the child as its file, which it loads again.
            params: the child's backend parameters (JSON-encoded, which `--param` reads as YAML).
            env: variables set for the child, over this process's environment.
        """
        self.backend_name = backend_name
        # Loopback, no key, and limits no lone client reaches: the only client is this process (and its forks).
        argv = [python, "-m", "vla_ros.cli", "serve", "--backend", backend_name, "--embodiment",
                str(embodiment.path.resolve()), "--host", "127.0.0.1", "--port", "0", "--api-key", "",
                "--max-connections", "1000", "--idle-timeout-s", "86400"]
        for key, value in params.items():
            argv += ["--param", f"{key}={json.dumps(value)}"]
        self.command = f"{python} -m vla_ros.cli serve --backend {backend_name}"
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        self.url: str | None = None
        self.remote: RemotePolicy | None = None
        self.owner = True  # of the child: forks share it
        self._listening = threading.Event()
        try:
            self.child = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent(os.getpid()))
        except OSError as error:
            raise PolicyError(f"{backend_name}: cannot run {python!r}: {error.strerror}") from None
        atexit.register(self.close)
        threading.Thread(target=self._read, name=f"{backend_name} server output", daemon=True).start()
        try:
            if not self._listening.wait(STARTUP_TIMEOUT_S):
                raise PolicyError(f"{self.command} did not listen within {STARTUP_TIMEOUT_S:.0f} s; "
                                  f"its last words: {self._last_line()}")
            if self.url is None:
                raise self._exit_error()
            self.remote = RemotePolicy(embodiment, url=self.url, timeout_s=REQUEST_TIMEOUT_S,
                                       connect_timeout_s=STARTUP_TIMEOUT_S)
            self.remote.connect()
        except PolicyError:  # BackendUnavailable too
            self.close()
            raise

    def _read(self) -> None:
        """Keep the child's last lines and note its url; drained to the end, so it never blocks on a full pipe."""
        for raw in iter(self.child.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            if self.url is None and line.startswith(READY):
                self.url = line[len(READY):].strip()
                self._listening.set()
        self.child.stdout.close()
        self._listening.set()

    def _last_line(self) -> str:
        return next((line for line in reversed(self.output) if line.strip()), "nothing")

    def _exit_error(self) -> PolicyError:
        """The child's own one-line error (`vla-ros serve: ...`) if it gave one, else its last line."""
        code = self.child.wait()
        said = self._last_line()
        prefix = "vla-ros serve: "
        if said.startswith(prefix):
            return PolicyError(said[len(prefix):])
        return PolicyError(f"{self.command} exited with status {code}: {said}")

    @property
    def metadata(self) -> dict:
        return self.remote.metadata

    @property
    def supports_prefix(self) -> bool:
        return self.remote.supports_prefix

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        try:
            return self.remote.infer(observation, prefix)
        except BackendUnavailable:
            if self.child.poll() is not None:
                raise self._exit_error() from None
            raise

    def reset(self) -> None:
        self.remote.reset()

    def fork(self) -> SpawnedPolicy:
        """The same child on a connection of its own, hence an episode of its own in the child's server.

        Closing the fork closes only that connection.
        """
        twin = copy.copy(self)
        twin.remote = self.remote.fork()
        twin.owner = False
        return twin

    @property
    def state(self) -> str:
        return f"{self.backend_name} in child process {self.child.pid}: {self.remote.state}"

    def close(self) -> None:
        """Disconnect and, unless a fork, stop the child (SIGINT, then harder); safe to call twice."""
        if self.remote is not None:
            self.remote.close()
        if self.owner:
            atexit.unregister(self.close)
            if self.child.poll() is None:
                stop(self.child)
