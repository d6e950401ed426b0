"""Differential inverse kinematics of one arm with pink: a tool pose path turned into joint positions.

Each step of the path is one QP (pink on pinocchio, solved by proxsuite): the tool frame task
pulls towards the step's pose, a light posture task towards the arm's home settles the null space
of a redundant arm, Levenberg-Marquardt damping keeps the solution bounded near singularities,
and the joint limits (less the soft margin) and velocity limits are constraints, so a step the
arm cannot follow is clamped, never jumped. The rest of the robot (torso, other arm) stays where
the observation put it: the model is reduced to the arm's joints around that configuration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pink
import pinocchio as pin
from pink.exceptions import PinkError

from vla_ros.embodiment.embodiment import Embodiment, JointGroup

SOLVER = "proxqp"
POSITION_COST = 1.0  # [cost / m]
ORIENTATION_COST = 0.5  # [cost / rad]
POSTURE_COST = 1e-3  # [cost / rad]: only settles the null space
LM_DAMPING = 1e-3  # the frame task's damping near singularities
# Damping of every joint's motion: near a singularity (a 6-DoF arm's aligned wrist axes) the
# tool task leaves directions nearly free, and undamped the posture task swings the arm along them.
DAMPING = 1e-3
ITERATIONS = 3  # QPs per path step: the step's time is split between them
POSITION_TOLERANCE = 0.005  # [m] a step farther than this from its pose was clamped
ORIENTATION_TOLERANCE = 0.05  # [rad]


@dataclass
class PathResult:
    """Joint positions along a tool path and how well they follow it.

    Attributes:
        positions: (H, n) [rad | m] the arm's joints at each step.
        clamped: steps whose pose the limits kept out of reach (farther than the tolerances).
        position_error: (H,) [m] distance of the reached tool position from each step's pose.
    """

    positions: np.ndarray
    clamped: int
    position_error: np.ndarray


class ArmDiffIK:
    """Pink's differential IK for one arm group that has an `ee_frame`."""

    def __init__(self, embodiment: Embodiment, group: JointGroup):
        self.embodiment = embodiment
        self.group = group
        self.kinematics = embodiment.kinematics
        self.index = self.kinematics.index(group.joints)
        model = self.kinematics.model
        self._arm_ids = [model.getJointId(name) for name in group.joints]
        self._locked = [i for i in range(1, model.njoints) if i not in self._arm_ids]
        margin = group.soft_margin
        self.lower = np.where(np.isfinite(group.lower), group.lower + margin, -np.inf)
        self.upper = np.where(np.isfinite(group.upper), group.upper - margin, np.inf)

    def pose(self, q_full: np.ndarray) -> np.ndarray:
        """(4, 4) tool pose in the root frame for a full joint vector (`Kinematics.joint_names` order)."""
        return self.kinematics.frame_pose(q_full, self.group.ee_frame)

    def _reduced(self, q_full: np.ndarray) -> pin.Model:
        """The arm alone, the rest of the robot locked at `q_full`, with the group's limits."""
        model = pin.buildReducedModel(self.kinematics.model, self._locked, self.kinematics.configuration(q_full))
        for k, joint_id in enumerate(model.getJointId(name) for name in self.group.joints):
            joint = model.joints[joint_id]
            if joint.nq == 1:
                model.lowerPositionLimit[joint.idx_q] = self.lower[k]
                model.upperPositionLimit[joint.idx_q] = self.upper[k]
            model.velocityLimit[joint.idx_v] = self.group.velocity_limit[k]
        return model

    def _to_q(self, model: pin.Model, values: np.ndarray) -> np.ndarray:
        q = pin.neutral(model)
        for k, name in enumerate(self.group.joints):
            joint = model.joints[model.getJointId(name)]
            if joint.nq == 2:
                q[joint.idx_q:joint.idx_q + 2] = (np.cos(values[k]), np.sin(values[k]))
            else:
                q[joint.idx_q] = values[k]
        return q

    def _from_q(self, model: pin.Model, q: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Joint values of `q`; continuous joints unwrapped next to `previous`."""
        values = np.empty(len(self.group.joints))
        for k, name in enumerate(self.group.joints):
            joint = model.joints[model.getJointId(name)]
            if joint.nq == 2:
                angle = np.arctan2(q[joint.idx_q + 1], q[joint.idx_q])
                values[k] = previous[k] + (angle - previous[k] + np.pi) % (2 * np.pi) - np.pi
            else:
                values[k] = q[joint.idx_q]
        return values

    def follow(self, q_full: np.ndarray, poses: np.ndarray, dt: float) -> PathResult:
        """Joint positions that move the tool through `poses`, one every `dt` [s].

        Args:
            q_full: (n_all,) the observed joint vector (`Kinematics.joint_names` order).
            poses: (H, 4, 4) tool poses in the root frame, one per step.
            dt: [s] time between steps: with the velocity limits, how far a step may go.
        """
        model = self._reduced(q_full)
        start = np.clip(q_full[self.index], self.lower, self.upper)
        configuration = pink.Configuration(model, model.createData(), self._to_q(model, start))
        tool = pink.FrameTask(self.group.ee_frame, POSITION_COST, ORIENTATION_COST, lm_damping=LM_DAMPING)
        posture = pink.PostureTask(POSTURE_COST)
        posture.set_target(self._to_q(model, np.clip(self.group.home, self.lower, self.upper)))
        positions, errors, clamped, current = [], [], 0, start
        for pose in poses:
            tool.set_target(pin.SE3(pose[:3, :3], pose[:3, 3]))
            for _ in range(ITERATIONS):
                try:
                    velocity = pink.solve_ik(configuration, (tool, posture), dt / ITERATIONS, SOLVER,
                                             damping=DAMPING, safety_break=False)
                except PinkError:
                    velocity = np.zeros(model.nv)  # no feasible step: stay, counted below
                configuration.integrate_inplace(velocity, dt / ITERATIONS)
            current = np.clip(self._from_q(model, configuration.q, current), self.lower, self.upper)
            reached = configuration.get_transform_frame_to_world(self.group.ee_frame)
            position_error = float(np.linalg.norm(reached.translation - pose[:3, 3]))
            rotation_error = float(np.linalg.norm(pin.log3(pose[:3, :3] @ reached.rotation.T)))
            clamped += position_error > POSITION_TOLERANCE or rotation_error > ORIENTATION_TOLERANCE
            positions.append(current)
            errors.append(position_error)
        return PathResult(np.array(positions), int(clamped), np.array(errors))
