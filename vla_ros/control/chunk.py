"""Action chunks: a short timed trajectory of joint targets, checked whole before it is used.

A chunk's `stamp` is the time of the observation it was computed from; its points are at
`stamp + times[k]`. It is validated against the embodiment before anything of it is used, and
rejected whole, with the reason, if any rule fails: a chunk is never half-applied.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError


class ChunkRejected(VlaRosError):
    """A chunk that was not used, with the reason."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"chunk rejected: {reason}")


@dataclass(frozen=True)
class Chunk:
    """Joint targets over time.

    Attributes:
        stamp: [s] time of the observation the chunk was computed from (the controller's clock).
        joints: joint names, a subset of the commanded joints.
        times: (K,) [s] strictly increasing offsets from `stamp`.
        positions: (K, n) [rad | m] targets, columns in `joints` order.
        velocities: (K, n) [rad/s | m/s], or None to derive them from the positions.
    """

    stamp: float
    joints: tuple[str, ...]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None

    @property
    def end(self) -> float:
        """[s] absolute time of the last point."""
        return self.stamp + float(self.times[-1])


def validate(joints: Sequence[str], times, positions, velocities, stamp: float, now: float,
             commanded: Mapping[str, int], delegated: set[str], max_age_s: float,
             future_tolerance_s: float = 0.05) -> Chunk:
    """A Chunk of the points still ahead of `now`, or ChunkRejected saying what is wrong.

    Args:
        joints: names, each a commanded joint, none twice.
        times: (K,) [s] offsets from `stamp`, strictly increasing, >= 0.
        positions: K rows of len(joints) finite values.
        velocities: empty, or K rows like positions.
        stamp: [s] observation time; not older than `max_age_s`, not in the future.
        now: [s] the controller's clock.
        commanded: joint name -> index of every joint the controller commands.
        delegated: joints a vendor stack owns (named separately in the reason).
    """
    joints = tuple(joints)
    if not joints:
        raise ChunkRejected("no joint names")
    for name in joints:
        if name in delegated:
            raise ChunkRejected(f"joint {name!r} is delegated to the vendor stack and never commanded")
        if name not in commanded:
            raise ChunkRejected(f"unknown joint {name!r} (commanded joints: {', '.join(commanded)})")
    twice = sorted({n for n in joints if joints.count(n) > 1})
    if twice:
        raise ChunkRejected(f"joints {twice} appear more than once")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) == 0:
        raise ChunkRejected("no points")
    positions = _rows(positions, "positions", len(times))
    if len(positions) != len(times):
        raise ChunkRejected(f"{len(positions)} rows of positions do not make {len(times)} points")
    if positions.shape[1] != len(joints):
        raise ChunkRejected(f"points have {positions.shape[1]} positions for {len(joints)} joints")
    velocities = _rows(velocities, "velocities", len(times)) if velocities is not None and len(velocities) else None
    if velocities is not None and velocities.size != positions.size:
        raise ChunkRejected(f"{velocities.size} velocity values for {positions.size} positions")
    for label, values in (("times", times), ("positions", positions), ("velocities", velocities)):
        if values is not None and not np.all(np.isfinite(values)):
            raise ChunkRejected(f"non-finite {label}")
    if np.any(times < 0) or np.any(np.diff(times) <= 0):
        raise ChunkRejected("time_from_start must be >= 0 and strictly increasing")
    if not np.isfinite(stamp):
        raise ChunkRejected("non-finite stamp")
    age = now - stamp
    if age > max_age_s:
        raise ChunkRejected(f"observation is {age:.3f} s old (limit {max_age_s:.3f} s)")
    if age < -future_tolerance_s:
        raise ChunkRejected(f"stamp is {-age:.3f} s in the future (are the clocks the same?)")
    ahead = stamp + times > now
    if not np.any(ahead):
        raise ChunkRejected(f"every point is in the past (last at {stamp + times[-1] - now:+.3f} s)")
    return Chunk(stamp, joints, times[ahead], positions[ahead], None if velocities is None else velocities[ahead])


def _rows(values, label: str, points: int) -> np.ndarray:
    """(rows, m) float array of per-point rows, or ChunkRejected if there are none or they are ragged."""
    rows = [np.ravel(np.asarray(row, dtype=float)) for row in values]
    if not rows:
        raise ChunkRejected(f"no {label}")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise ChunkRejected(f"points have different numbers of {label} ({lengths}): {len(rows)} rows do not make {points} points")
    return np.array(rows)
