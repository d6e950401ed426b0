"""The motion limiter: the commanded state never leaves the URDF's limits, whatever the targets do.

Each control period it moves the commanded state (q, qd) towards the target (q*, qd*):
- q* is clamped into [lower + margin, upper - margin] (and qd* zeroed where it was clamped);
  continuous joints are not clamped, and their error is taken the short way round;
- the commanded velocity heads for the target in one period, but its difference from qd* stays
  small enough to stop on the target: |qd - qd*| <= brake(|e|), where brake(d) is the largest
  speed from which periods slowing by a*dt each cover at most d (exact for q += qd * dt, so
  discretisation never overshoots);
- then it changes by at most a*dt, is bounded by the velocity limit, and heads towards a hard
  position limit no faster than brake(distance to it).
So |qd| <= velocity limit, |qd(t) - qd(t - dt)| <= acceleration limit * dt, lower <= q <= upper,
for any finite target sequence (chunks are validated before they get here).
"""
from __future__ import annotations

import numpy as np

from vla_ros.control.pd import wrap_to_pi


class MotionLimiter:
    """Limits for n joints, all arrays (n,).

    Args:
        lower, upper: [rad | m] position limits (+-inf for continuous joints).
        velocity: [rad/s | m/s] velocity limits (> 0).
        acceleration: [rad/s^2 | m/s^2] acceleration limits (> 0).
        margin: [rad | m] kept inside the position limits for targets.
        continuous: bool, joints without position limits that wrap.
    """

    def __init__(self, lower, upper, velocity, acceleration, margin, continuous):
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.velocity = np.asarray(velocity, dtype=float)
        self.acceleration = np.asarray(acceleration, dtype=float)
        self.continuous = np.asarray(continuous, dtype=bool)
        span = np.where(self.continuous, np.inf, self.upper - self.lower)
        margin = np.minimum(np.asarray(margin, dtype=float), span / 2)  # never an empty range
        self.target_lower = np.where(self.continuous, -np.inf, self.lower + margin)
        self.target_upper = np.where(self.continuous, np.inf, self.upper - margin)
        self.any_continuous = bool(self.continuous.any())
        self._acceleration3 = np.tile(self.acceleration, 3)
        self.q = np.zeros(len(self.lower))
        self.qd = np.zeros(len(self.lower))

    def reset(self, positions: np.ndarray) -> None:
        """Start from `positions` at rest (clamped into the limits)."""
        self.q = np.where(self.continuous, positions, np.clip(positions, self.lower, self.upper)).astype(float)
        self.qd = np.zeros_like(self.q)

    def step(self, q_target: np.ndarray, qd_target: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Advance by dt [s] towards (q*, qd*); returns the commanded (q, qd) (copies).

        Written with np.minimum/np.maximum and one _brake call: at 1 kHz every microsecond counts.
        """
        target = np.minimum(np.maximum(q_target, self.target_lower), self.target_upper)
        qd_target = np.where(target == q_target, qd_target, 0.0)
        error = target - self.q
        if self.any_continuous:
            error = np.where(self.continuous, wrap_to_pi(error), error)
        n = len(self.q)
        brake = self._brake(np.concatenate([np.abs(error), self.q - self.lower, self.upper - self.q]), dt)
        stopping, towards_lower, towards_upper = brake[:n], brake[n:2 * n], brake[2 * n:]
        wanted = np.minimum(np.maximum(error / dt, qd_target - stopping), qd_target + stopping)
        change = self.acceleration * dt
        qd = np.minimum(np.maximum(wanted, self.qd - change), self.qd + change)
        qd = np.minimum(np.maximum(qd, -self.velocity), self.velocity)
        qd = np.minimum(np.maximum(qd, -towards_lower), towards_upper)
        self.q, self.qd = self.q + qd * dt, qd
        return self.q.copy(), self.qd.copy()

    def _brake(self, distance: np.ndarray, dt: float) -> np.ndarray:
        """Per element of `distance`, the largest speed from which braking stops within it.

        `distance` holds three distances per joint (3n). Braking by a*dt per period (q += qd * dt)
        with k periods of motion covers k*v*dt - a*dt^2*k(k-1)/2 = distance. Infinite distances
        (continuous joints) give huge speeds.
        """
        acceleration = self._acceleration3
        d = np.minimum(np.maximum(distance, 0.0), 1e12) / (acceleration * dt * dt)
        k = np.floor(0.5 + np.sqrt(0.25 + 2.0 * d))
        return (d + 0.5 * k * (k - 1)) / k * (acceleration * dt)
