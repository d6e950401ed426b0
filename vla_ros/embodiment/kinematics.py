"""Kinematics and dynamics of a robot description, computed by pinocchio.

The base is fixed at the URDF root (for a mobile base, poses are in the base frame; for a humanoid,
in the pelvis frame with the legs wherever their positions say). Joint vectors hold one value per
independent movable joint, in `Kinematics.joint_names` order; mimic joints follow their primary,
continuous joints are plain angles here (pinocchio's cos/sin encoding stays inside this module).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pinocchio as pin

from vla_ros.embodiment.urdf import RobotDescription, UrdfError


class Kinematics:
    """Pinocchio's model of a URDF: frame poses, Jacobians, gravity, the mass matrix and bias torques."""

    def __init__(self, description: RobotDescription):
        try:
            self.model = pin.buildModelFromXML(description.xml.decode())
        except (RuntimeError, ValueError) as error:
            raise UrdfError(description.path, f"pinocchio cannot build a model: {error}") from error
        self.data = self.model.createData()
        self.joint_names = [j.name for j in description.movable_joints if j.mimic is None]
        self._mimics = [
            (self._joint_id(j.name), self.joint_names.index(j.mimic[0]), j.mimic[1], j.mimic[2])
            for j in description.movable_joints if j.mimic is not None
        ]
        self._ids = [self._joint_id(name) for name in self.joint_names]
        self._v_index = np.array([self.model.joints[i].idx_v for i in self._ids], dtype=int)
        # Pinocchio's velocities from the joint vector's: a mimic joint moves with its primary, and
        # the transpose carries its torque back to the primary, the joint that gets commanded.
        self._coupling = np.zeros((self.model.nv, len(self.joint_names)))
        self._coupling[self._v_index, np.arange(len(self.joint_names))] = 1.0
        for joint_id, primary, multiplier, _ in self._mimics:
            self._coupling[self.model.joints[joint_id].idx_v, primary] += multiplier
        # configuration() is on every hot path: precompute where each value goes in pinocchio's q.
        two = np.array([self.model.joints[i].nq == 2 for i in self._ids], dtype=bool)
        q_index = np.array([self.model.joints[i].idx_q for i in self._ids], dtype=int)
        self._plain, self._plain_q = np.flatnonzero(~two), q_index[~two]
        self._circle, self._circle_q = np.flatnonzero(two), q_index[two]
        self._neutral = pin.neutral(self.model)

    def _joint_id(self, name: str) -> int:
        return self.model.getJointId(name)

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Positions of `names` in the joint vector."""
        return np.array([self.joint_names.index(name) for name in names], dtype=int)

    def configuration(self, positions: np.ndarray) -> np.ndarray:
        """Pinocchio's q for a joint vector (n,) [rad | m]."""
        positions = np.asarray(positions, dtype=float)
        q = self._neutral.copy()
        q[self._plain_q] = positions[self._plain]
        q[self._circle_q] = np.cos(positions[self._circle])
        q[self._circle_q + 1] = np.sin(positions[self._circle])
        for joint_id, primary, multiplier, offset in self._mimics:
            self._set(q, joint_id, multiplier * positions[primary] + offset)
        return q

    def _set(self, q: np.ndarray, joint_id: int, value: float) -> None:
        joint = self.model.joints[joint_id]
        if joint.nq == 2:  # continuous joint: (cos, sin)
            q[joint.idx_q:joint.idx_q + 2] = (np.cos(value), np.sin(value))
        else:
            q[joint.idx_q] = value

    def frame_pose(self, positions: np.ndarray, frame: str) -> np.ndarray:
        """(4, 4) pose of a URDF link or joint frame in the root link's frame."""
        pin.framesForwardKinematics(self.model, self.data, self.configuration(positions))
        return self.data.oMf[self._frame_id(frame)].homogeneous.copy()

    def frame_jacobian(self, positions: np.ndarray, frame: str) -> np.ndarray:
        """(6, n) Jacobian of `frame`: rows linear then angular velocity, in root-aligned axes."""
        q = self.configuration(positions)
        pin.computeJointJacobians(self.model, self.data, q)
        pin.updateFramePlacements(self.model, self.data)
        full = pin.getFrameJacobian(
            self.model, self.data, self._frame_id(frame), pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        )
        return full[:, self._v_index]

    def gravity(self, positions: np.ndarray) -> np.ndarray:
        """(n,) joint torques [Nm | N] that hold the robot still against gravity.

        A mimic joint's load is carried by its primary (times the multiplier), since the primary
        is the one that gets commanded.
        """
        tau = pin.computeGeneralizedGravity(self.model, self.data, self.configuration(positions))
        return self._coupling.T @ tau

    def dynamics(self, positions: np.ndarray, velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The joint space's equation of motion M(q) qdd + b(q, qd) = tau, as (M, b).

        M (n, n) [kg m^2 | kg], b (n,) [Nm | N]: b holds gravity, Coriolis and centrifugal torques.
        Mimic joints move with their primary, which carries their inertia and load. Motor armature
        is not in the URDF: add it.
        """
        q = self.configuration(positions)
        mass = pin.crba(self.model, self.data, q)
        mass = np.triu(mass) + np.triu(mass, 1).T  # crba fills the upper triangle only
        bias = pin.nonLinearEffects(self.model, self.data, q, self._coupling @ np.asarray(velocities, dtype=float))
        return self._coupling.T @ mass @ self._coupling, self._coupling.T @ bias

    def inertia_diagonal(self, positions: np.ndarray) -> np.ndarray:
        """(n,) diagonal of the joint-space mass matrix [kg m^2 | kg]: what each joint moves."""
        mass_matrix = pin.crba(self.model, self.data, self.configuration(positions))
        return np.diag(mass_matrix)[self._v_index].copy()

    def _frame_id(self, frame: str) -> int:
        """A link's frame (a joint of the same name, which some URDFs have, comes second)."""
        if self.model.existFrame(frame, pin.FrameType.BODY):
            return self.model.getFrameId(frame, pin.FrameType.BODY)
        if not self.model.existFrame(frame):
            raise KeyError(f"no frame {frame!r} in the model")
        return self.model.getFrameId(frame)
