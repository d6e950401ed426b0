"""The chunk timeline: targets (q*, qd*) of every commanded joint at any time, as chunks arrive.

Three strategies for what happens when a chunk arrives while another is running:

- `splice` (default): the new chunk is joined onto the commanded state (position and velocity)
  at its arrival, and the old plan is blended into the new one over `blend_s` with a quintic
  smoothstep, so position, velocity and acceleration stay continuous and a chunk computed from
  an older observation does not yank the arm back.
- `replace`: the new chunk takes over at once, from its own first point (what a naive stack
  does; kept to measure the difference).
- `ensemble`: ACT's temporal ensembling: at each time, a weighted mean over every chunk that
  covers it, older chunks weighted more (w = exp(-decay * age rank)).

Inside a chunk, targets follow a cubic Hermite curve through its points, using the chunk's
velocities or, without them, finite differences. After the last point the target holds there.
Joints a chunk does not name hold the targets they had when it arrived.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vla_ros.control.chunk import JointChunk

STRATEGIES = ("splice", "replace", "ensemble")


class Hold:
    """Constant targets."""

    def __init__(self, positions: np.ndarray):
        self.positions = np.array(positions, dtype=float)
        self.end = -np.inf

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        return self.positions.copy(), np.zeros_like(self.positions)


class Path:
    """A Hermite curve through knots for some joints (`index`); the others follow `rest`."""

    def __init__(self, times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None,
                 index: np.ndarray, rest):
        self.times = times
        self.positions = positions
        self.velocities = velocities if velocities is not None else _finite_differences(times, positions)
        self.index = index
        self.rest = rest
        self.end = float(times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        q, v = self.rest.sample(t)
        q[self.index], v[self.index] = self.local(t)
        return q, v

    def covers(self, t: float) -> bool:
        return self.times[0] <= t <= self.end

    def local(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(q, v) of this path's own joints; held at the first/last knot outside its span."""
        times = self.times
        if t < times[0]:
            return self.positions[0].copy(), np.zeros(self.positions.shape[1])
        if t >= times[-1]:
            return self.positions[-1].copy(), np.zeros(self.positions.shape[1])
        k = int(np.searchsorted(times, t, side="right")) - 1
        h = times[k + 1] - times[k]
        s = (t - times[k]) / h
        s2, s3 = s * s, s * s * s
        p0, p1 = self.positions[k], self.positions[k + 1]
        m0, m1 = self.velocities[k] * h, self.velocities[k + 1] * h
        q = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1
        v = ((6 * s2 - 6 * s) * p0 + (3 * s2 - 4 * s + 1) * m0 + (-6 * s2 + 6 * s) * p1 + (3 * s2 - 2 * s) * m1) / h
        return q, v


def _finite_differences(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Knot velocities: central differences inside, one-sided at the ends."""
    if len(times) == 1:
        return np.zeros_like(positions)
    velocities = np.gradient(positions, times, axis=0, edge_order=1)
    return velocities


class Blend:
    """`old` turning into `new` over [start, start + duration] with a quintic smoothstep."""

    def __init__(self, old, new: Path, start: float, duration: float):
        self.old, self.new, self.start, self.duration = old, new, start, duration
        self.end = new.end

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        q_new, v_new = self.new.sample(t)
        if self.duration <= 0 or t >= self.start + self.duration:
            return q_new, v_new
        q_old, v_old = self.old.sample(t)
        s = max(0.0, (t - self.start) / self.duration)
        w = s * s * s * (10 - 15 * s + 6 * s * s)
        dw = 30 * s * s * (1 - s) ** 2 / self.duration
        return q_old + w * (q_new - q_old), v_old + w * (v_new - v_old) + dw * (q_new - q_old)

    def settled(self, t: float) -> bool:
        return t >= self.start + self.duration


@dataclass
class Timeline:
    """Targets for `n` commanded joints; `add` chunks (already validated), `sample` any time.

    Args:
        n: number of commanded joints.
        strategy: one of STRATEGIES.
        blend_s: [s] splice blend window.
        ensemble_decay: ACT's m: weight exp(-m * rank), rank 0 the oldest chunk.
    """

    n: int
    strategy: str = "splice"
    blend_s: float = 0.1
    ensemble_decay: float = 0.5
    current: object = None
    chunks: list[Path] = field(default_factory=list)
    last_target: np.ndarray | None = None

    def reset(self, positions: np.ndarray) -> None:
        """Hold `positions`, forgetting every chunk."""
        self.current = Hold(positions)
        self.chunks = []
        self.last_target = np.array(positions, dtype=float)

    def add(self, chunk: JointChunk, index: np.ndarray, now: float) -> None:
        """Take a validated chunk whose joints sit at `index` in the commanded vector."""
        times = chunk.stamp + chunk.times
        q_now, v_now = self.sample(now)
        held = Hold(q_now)
        if self.strategy == "splice":
            knots = np.concatenate([[now], times])
            positions = np.vstack([q_now[index], chunk.positions])
            if chunk.velocities is not None:
                velocities = np.vstack([v_now[index], chunk.velocities])
            else:
                velocities = _finite_differences(knots, positions)
                velocities[0] = v_now[index]  # join the commanded velocity, not a guess of it
            self.current = Blend(_shallow(self.current, now), Path(knots, positions, velocities, index, held),
                                 now, self.blend_s)
        elif self.strategy == "replace":
            self.current = Path(times, chunk.positions, chunk.velocities, index, held)
        else:
            self.chunks = [c for c in self.chunks if c.end >= now] + [
                Path(times, chunk.positions, chunk.velocities, index, None)]

    def stop(self, now: float, accel: np.ndarray, shortest_s: float = 0.05) -> None:
        """Bring the targets to rest from where they are at `now` [s], then hold, forgetting every chunk.

        Constant deceleration per joint over one duration, long enough for each joint's `accel`
        [rad/s^2 | m/s^2] and at least `shortest_s`: position and velocity stay continuous.
        """
        q, v = self.sample(now)
        with np.errstate(divide="ignore", invalid="ignore"):
            needed = np.where(accel > 0, np.abs(v) / accel, 0.0)
        duration = max(shortest_s, float(np.max(needed, initial=0.0)))
        path = Path(np.array([now, now + duration]), np.vstack([q, q + v * duration / 2]),
                    np.vstack([v, np.zeros_like(v)]), np.arange(self.n), Hold(q))
        self.chunks = [path] if self.strategy == "ensemble" else []
        self.current = path

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(q*, qd*) for every commanded joint at time t [s]."""
        if self.strategy == "ensemble":
            q, v = self._ensemble(t)
        else:
            if isinstance(self.current, Blend) and self.current.settled(t):
                self.current = self.current.new  # collapse finished blends: constant work per sample
            q, v = self.current.sample(t)
        self.last_target = q
        return q, v

    def _ensemble(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        q, v = self.last_target.copy(), np.zeros(self.n)
        covering = [c for c in self.chunks if c.covers(t)]
        if not covering:
            return q, v
        weights_sum = np.zeros(self.n)
        q_sum, v_sum = np.zeros(self.n), np.zeros(self.n)
        for rank, chunk in enumerate(covering):
            weight = np.exp(-self.ensemble_decay * rank)
            q_local, v_local = chunk.local(t)
            q_sum[chunk.index] += weight * q_local
            v_sum[chunk.index] += weight * v_local
            weights_sum[chunk.index] += weight
        covered = weights_sum > 0
        q[covered] = q_sum[covered] / weights_sum[covered]
        v[covered] = v_sum[covered] / weights_sum[covered]
        return q, v

    def exhausted(self, t: float) -> bool:
        """True when no chunk covers t (targets hold at the last point)."""
        if self.strategy == "ensemble":
            return not any(c.covers(t) for c in self.chunks)
        return t > self.current.end


def _shallow(sampler, now: float, depth: int = 3):
    """`sampler`, with blends nested deeper than `depth` held at their value now.

    Chunks arriving faster than the blend window would otherwise stack blends without bound.
    """
    if not isinstance(sampler, Blend):
        return sampler
    if depth == 0:
        return Hold(sampler.sample(now)[0])
    return Blend(_shallow(sampler.old, now, depth - 1), sampler.new, sampler.start, sampler.duration)
