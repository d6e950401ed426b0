"""Action chunks as the controller takes them: validated values, rejected whole with the reason.

A joint chunk is a short timed trajectory of joint targets; a base chunk one of planar base
velocities. Each one's `stamp` is the time of the observation it was computed from, and its
points are at `stamp + times[k]`. Building one checks everything that can be checked without a
robot (names, shapes, finite numbers, times strictly increasing); the controller then checks it
against the embodiment and its clock (vla_ros.control.controller). A chunk that fails any rule is
never half-applied: `ChunkRejected` says why, and nothing changes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError

BASE_CHANNELS = 3  # vx [m/s], vy [m/s], wz [rad/s]
NOW_S = 1e-6  # [s] a point this close to now is at now


class ChunkRejected(VlaRosError):
    """A chunk that was not used, with the reason."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"chunk rejected: {reason}")


@dataclass(frozen=True)
class JointChunk:
    """Joint targets over time.

    Attributes:
        stamp: [s] time of the observation the chunk was computed from (the controller's clock).
        joints: joint names, none twice.
        times: (K,) [s] offsets from `stamp`, >= 0 and strictly increasing.
        positions: (K, n) [rad | m] targets, columns in `joints` order.
        velocities: (K, n) [rad/s | m/s], or None to derive them from the positions.
    """

    stamp: float
    joints: tuple[str, ...]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None

    def __post_init__(self):
        joints = tuple(self.joints)
        if not joints:
            raise ChunkRejected("no joint names")
        twice = sorted({name for name in joints if joints.count(name) > 1})
        if twice:
            raise ChunkRejected(f"joints {twice} appear more than once")
        times = _times(self.times, self.stamp)
        positions = np.asarray(self.positions, dtype=float)
        if positions.ndim != 2 or len(positions) != len(times):
            raise ChunkRejected(f"positions of shape {positions.shape} do not make {len(times)} points")
        if positions.shape[1] != len(joints):
            raise ChunkRejected(f"points have {positions.shape[1]} positions for {len(joints)} joints")
        velocities = None if self.velocities is None else np.asarray(self.velocities, dtype=float)
        if velocities is not None and velocities.shape != positions.shape:
            raise ChunkRejected(f"velocities of shape {velocities.shape} for positions of shape {positions.shape}")
        for label, values in (("positions", positions), ("velocities", velocities)):
            if values is not None and not np.all(np.isfinite(values)):
                raise ChunkRejected(f"non-finite {label}")
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "velocities", velocities)

    @classmethod
    def from_points(cls, stamp: float, joints: Sequence[str], times, positions: Sequence, velocities: Sequence = ()):
        """A chunk from per-point rows as a message carries them (ChunkRejected when ragged).

        `velocities` is empty when no point has any.
        """
        rows = _rows(positions, "positions", len(times))
        speeds = _rows(velocities, "velocities", len(times)) if len(velocities) else None
        return cls(stamp, tuple(joints), np.asarray(times, dtype=float), rows, speeds)

    @property
    def end(self) -> float:
        """[s] absolute time of the last point."""
        return self.stamp + float(self.times[-1])

    def after(self, now: float) -> JointChunk:
        """The points later than `now` [s] (ChunkRejected when there are none).

        A point within NOW_S of `now` is now, not ahead: stamps and times round to nanoseconds on
        the wire, and whether stamp + time lands a rounding error above or below now must not decide.
        """
        ahead = self.stamp + self.times > now + NOW_S
        if not np.any(ahead):
            raise ChunkRejected(f"every point is in the past (last at {self.end - now:+.3f} s)")
        if np.all(ahead):
            return self
        return JointChunk(self.stamp, self.joints, self.times[ahead], self.positions[ahead],
                          None if self.velocities is None else self.velocities[ahead])


@dataclass(frozen=True)
class BaseChunk:
    """Planar velocities of a mobile base over time.

    Attributes:
        stamp: [s] time of the observation the chunk was computed from.
        times: (K,) [s] offsets from `stamp`, >= 0 and strictly increasing.
        velocities: (K, 3) vx [m/s], vy [m/s], wz [rad/s] in the base's frame.
    """

    stamp: float
    times: np.ndarray
    velocities: np.ndarray

    def __post_init__(self):
        times = _times(self.times, self.stamp, "base chunk ")
        velocities = np.asarray(self.velocities, dtype=float)
        if velocities.shape != (len(times), BASE_CHANNELS):
            raise ChunkRejected(f"base chunk needs one (vx, vy, wz) per point, got shape {velocities.shape}")
        if not np.all(np.isfinite(velocities)):
            raise ChunkRejected("non-finite base chunk velocities")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "velocities", velocities)


def _times(times, stamp: float, what: str = "") -> np.ndarray:
    """(K,) float offsets, or ChunkRejected: none, non-finite, negative, not strictly increasing."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) == 0:
        raise ChunkRejected(f"{what}has no points")
    if not np.all(np.isfinite(times)) or not np.isfinite(stamp):
        raise ChunkRejected(f"{what}has non-finite times or stamp")
    if np.any(times < 0) or np.any(np.diff(times) <= 0):
        raise ChunkRejected(f"{what}time_from_start must be >= 0 and strictly increasing")
    return times


def _rows(values: Sequence, label: str, points: int) -> np.ndarray:
    """(rows, m) float array of per-point rows, or ChunkRejected if they are missing or ragged."""
    rows = [np.ravel(np.asarray(row, dtype=float)) for row in values]
    if not rows:
        raise ChunkRejected("has no points" if points == 0 else f"no {label}")
    if len(rows) != points:
        raise ChunkRejected(f"{len(rows)} rows of {label} do not make {points} points")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise ChunkRejected(f"points have different numbers of {label} ({lengths})")
    return np.array(rows).reshape(points, -1)
