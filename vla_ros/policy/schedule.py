"""When to ask the policy for the next chunk, and what the robot will do meanwhile (no ROS).

A chunk covers (stamp, stamp + H dt]. The next request goes out when the executing chunk has
`fraction` of its span left, or sooner when what is left would not outlast one and a half
inference delays (so the controller never runs dry while the model thinks); or, with
`rate_hz` > 0, at that fixed rate. The inference delay is a sliding-window median of measured
latencies, the first `warmup` after each (re)start excluded (first calls load weights, open
connections, warm caches).
"""
from __future__ import annotations

import numpy as np

from vla_ros.policy.interface import ActionChunk
from vla_ros.stats import Window


class ChunkSchedule:
    """When the next chunk is due, the inference delay estimate, and the executing chunk's prefix."""

    def __init__(self, fraction: float = 0.5, rate_hz: float = 0.0, window: int = 20, warmup: int = 2):
        self.fraction = fraction
        self.rate_hz = rate_hz
        self.latency = Window(window)
        self.warmup = warmup
        self._seen = 0
        self.executing: ActionChunk | None = None
        self._last_request = -np.inf

    @property
    def delay(self) -> float:
        """[s] the inference delay estimate (0 until measured)."""
        return float(np.median(self.latency.samples())) if self.latency.count else 0.0

    def restart(self) -> None:
        """A new instruction or a new backend: the next request is due now, warm-up starts over."""
        self.executing = None
        self._seen = 0
        self.latency.clear()

    def due(self, now: float) -> bool:
        return now >= self.next_due()

    def next_due(self) -> float:
        """[s] when the next request falls due (-inf: at once)."""
        if self.executing is None:
            return -np.inf
        if self.rate_hz > 0:
            return self._last_request + 1.0 / self.rate_hz
        span = len(self.executing.actions) * self.executing.dt
        return self.executing.stamp + span - max(self.fraction * span, 1.5 * self.delay)

    def requested(self, now: float) -> None:
        self._last_request = now

    def answered(self, chunk: ActionChunk, latency_s: float) -> None:
        self._seen += 1
        if self._seen > self.warmup:
            self.latency.add(latency_s)
        self.executing = chunk

    def prefix(self, stamp: float, dt: float, until: float) -> np.ndarray | None:
        """The executing chunk's actions at stamp + (k + 1) dt up to `until`, (K, D), or None.

        These are what the robot will do while the next inference runs: a backend that does
        real-time chunking makes its new chunk start from them.
        """
        chunk = self.executing
        if chunk is None:
            return None
        times = stamp + dt * np.arange(1, int(np.floor((until - stamp) / dt + 1e-9)) + 1)  # 0.1 / 0.05 is 1.999...
        times = times[times <= chunk.stamp + chunk.times[-1]]
        if not len(times):
            return None
        knots = chunk.stamp + np.concatenate([[0.0], chunk.times])
        rows = np.vstack([chunk.actions[:1], chunk.actions])
        return np.stack([np.interp(times, knots, rows[:, j]) for j in range(rows.shape[1])], axis=1).astype(np.float32)
