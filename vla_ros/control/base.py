"""A mobile base's velocity chunks -> one planar velocity command (vx, vy, wz), rate limited.

A base chunk gives velocities at times after its stamp; between points the target is linear,
outside the newest chunk's span it is zero: a base must not keep driving on an old velocity.
A base chunk is also forgotten `timeout_s` after it arrived, whatever its span, so a policy that
goes silent stops the base sooner than the arm's hold. The command moves towards the target by
at most the acceleration limit per period and stays within the velocity limits.
"""
from __future__ import annotations

import numpy as np

from vla_ros.control.chunk import BaseChunk
from vla_ros.embodiment.embodiment import BaseGroup


class BaseTracker:
    """The velocity a base's chunks ask for, and the rate-limited command towards it."""

    def __init__(self, base: BaseGroup, timeout_s: float):
        self.base = base
        self.timeout_s = timeout_s
        self.times: np.ndarray | None = None  # (K,) absolute [s]
        self.velocities: np.ndarray | None = None  # (K, 3)
        self.arrived = -np.inf
        self.command = np.zeros(3)

    def submit(self, chunk: BaseChunk, now: float) -> None:
        """Take a (validated) base chunk arriving at `now` [s]; velocities beyond the limits are clamped."""
        self.times = chunk.stamp + chunk.times
        self.velocities = np.clip(chunk.velocities, -self.base.max_velocity, self.base.max_velocity)
        self.arrived = now

    def target(self, now: float) -> np.ndarray:
        """The velocity the chunks ask for at `now` (zeros outside the newest one or after the timeout)."""
        if self.times is None or now - self.arrived > self.timeout_s or not self.times[0] <= now <= self.times[-1]:
            return np.zeros(3)
        return np.array([np.interp(now, self.times, self.velocities[:, k]) for k in range(3)])

    def step(self, now: float, dt: float, stop: bool = False) -> np.ndarray:
        """The command for this period; `stop` (e-stop, stale state) brakes to zero within limits."""
        target = np.zeros(3) if stop else self.target(now)
        change = self.base.max_acceleration * dt
        self.command = np.clip(target, self.command - change, self.command + change)
        return self.command.copy()

    def forget(self) -> None:
        """Drop the chunk (the command still ramps down)."""
        self.times = self.velocities = None
