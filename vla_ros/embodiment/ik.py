"""Damped least-squares inverse kinematics of one arm, from a pinocchio model of the robot.

Positions are in the robot's root frame. The tool keeps a given orientation, weighted lower than
position: either a full rotation (3, 3), or only the direction of its z axis (3,), which leaves
the turn about that axis free. Redundancy pulls towards the arm's home posture.
"""
from __future__ import annotations

import numpy as np
import pinocchio as pin

from vla_ros.embodiment.kinematics import Kinematics

TOOL_DOWN = np.array([0.0, 0.0, -1.0])  # tools work on a table pointing down (their z axis), root frame
DAMPING = 0.05
ORIENTATION_WEIGHT = 0.4
POSTURE_GAIN = 0.2


class ArmIK:
    """IK moving `joints` to place `frame`, within [lower, upper], drawn towards `posture`."""

    def __init__(self, kinematics: Kinematics, joints, frame: str, lower: np.ndarray, upper: np.ndarray,
                 posture: np.ndarray):
        self.kinematics = kinematics
        self.frame = frame
        self.index = kinematics.index(joints)
        self.lower, self.upper, self.posture = lower, upper, posture

    @classmethod
    def for_group(cls, embodiment, group) -> ArmIK:
        """IK of an arm group (with an ee_frame), kept its soft margin inside its limits."""
        margin = group.soft_margin
        lower = np.where(np.isfinite(group.lower), group.lower + margin, -np.inf)
        upper = np.where(np.isfinite(group.upper), group.upper - margin, np.inf)
        return cls(embodiment.kinematics, group.joints, group.ee_frame, lower, upper, group.home)

    def pose(self, q_full: np.ndarray) -> np.ndarray:
        """(4, 4) tool pose in the root frame for a full joint vector."""
        return self.kinematics.frame_pose(q_full, self.frame)

    def step(self, q_full: np.ndarray, position: np.ndarray, orientation: np.ndarray | None,
             max_step: float) -> np.ndarray:
        """One DLS update of the arm's joints towards the target; returns the new full vector."""
        return self._step(q_full, position, orientation, max_step)[0]

    def _step(self, q_full, position, orientation, max_step) -> tuple[np.ndarray, float]:
        """(updated joints, position error before the update [m])."""
        pose = self.pose(q_full)
        jacobian = self.kinematics.frame_jacobian(q_full, self.frame)[:, self.index]
        error = np.zeros(6)
        error[:3] = position - pose[:3, 3]
        weights = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
        if orientation is not None and orientation.shape == (3, 3):
            error[3:] = pin.log3(orientation @ pose[:3, :3].T)
            weights[3:] = ORIENTATION_WEIGHT
        elif orientation is not None:
            axis = pose[:3, 2]
            error[3:] = _cross(axis, orientation / np.linalg.norm(orientation))
            jacobian[3:] = (np.eye(3) - np.outer(axis, axis)) @ jacobian[3:]  # turning about the axis is free
            weights[3:] = ORIENTATION_WEIGHT
        jacobian = jacobian * weights[:, None]
        error *= weights
        inverse = jacobian.T @ np.linalg.inv(jacobian @ jacobian.T + DAMPING**2 * np.eye(6))
        q = q_full[self.index]
        posture = POSTURE_GAIN * (self.posture - q)
        dq = inverse @ error + (np.eye(len(q)) - inverse @ jacobian) @ posture
        largest = np.max(np.abs(dq))
        if largest > max_step:
            dq *= max_step / largest
        updated = q_full.copy()
        updated[self.index] = np.clip(q + dq, self.lower, self.upper)
        return updated, float(np.linalg.norm(error[:3]))

    def solve(self, q_full: np.ndarray, position: np.ndarray, orientation: np.ndarray | None,
              tolerance: float = 0.005, iterations: int = 200) -> tuple[np.ndarray, float]:
        """Iterate until within `tolerance` [m] or stalled; returns (joints, position error [m])."""
        q, history = q_full, []
        for _ in range(iterations):
            updated, residual = self._step(q, position, orientation, max_step=0.2)
            if residual < tolerance:
                return q, residual
            history.append(residual)
            if len(history) > 20 and history[-20] - residual < 1e-3:
                return q, residual  # stalled: the target is out of reach
            q = updated
        return q, float(np.linalg.norm(position - self.pose(q)[:3, 3]))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cross product of two 3-vectors: np.cross's arithmetic without its overhead (a quarter of an IK step)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])
