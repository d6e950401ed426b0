"""The PD law, per joint group and control mode.

effort:   tau = kp (q* - q) + kd (qd* - qd) + g(q), clamped to the URDF effort limits
position: q*  (the hardware closes its own loop)
velocity: qd* (the hardware closes its own loop)

Continuous joints take the short way round: their position error is wrapped to [-pi, pi).
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment import JointGroup


def wrap_to_pi(angles: np.ndarray) -> np.ndarray:
    """Angles [rad] mapped to [-pi, pi)."""
    return (np.asarray(angles) + np.pi) % (2 * np.pi) - np.pi


def position_error(group: JointGroup, q_target: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q* - q per joint, wrapped for continuous joints."""
    error = q_target - q
    return np.where(group.continuous, wrap_to_pi(error), error) if group.continuous.any() else error


def group_command(group: JointGroup, q: np.ndarray, qd: np.ndarray, q_target: np.ndarray,
                  qd_target: np.ndarray, gravity: np.ndarray | None) -> np.ndarray:
    """The command a group's hardware takes in its mode, for targets q*, qd* (all (n,) arrays).

    `gravity` [Nm | N] is the feed-forward g(q) for effort mode (None: no compensation).
    """
    if group.mode == "effort":
        tau = group.kp * position_error(group, q_target, q) + group.kd * (np.asarray(qd_target) - qd)
        if gravity is not None:
            tau = tau + gravity
        return np.minimum(np.maximum(tau, -group.effort_limit), group.effort_limit)
    if group.mode == "position":
        return np.asarray(q_target, dtype=float).copy()
    return np.minimum(np.maximum(qd_target, -group.velocity_limit), group.velocity_limit)
