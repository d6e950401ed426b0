"""The control laws, per joint group and control mode.

effort, effort_law inverse_dynamics (the default):
    tau = M(q) qdd* + b(q, qd),  qdd* = (kp (q* - q) + kd (qd* - qd)) / I,  I = kd^2 / (4 kp)
effort, effort_law pd:
    tau = kp (q* - q) + kd (qd* - qd) + g(q)
position: q*  (the hardware closes its own loop)
velocity: qd* (the hardware closes its own loop)

Torques are clamped to the URDF effort limits. M is the joint-space mass matrix (plus the motor
armature), b gravity, Coriolis and centrifugal torques, g gravity alone; the controller computes
them from the URDF with pinocchio, for all inverse-dynamics groups together.

Why inverse dynamics: each joint's kp and kd are tuned for the inertia I it moves (critically
damped there: I = kd^2 / (4 kp)), but an arm also has motions that move far less. When arm7's first
and third joints nearly line up, turning them against each other moves only the links between:
per-joint PD gives that motion several times the bandwidth it was tuned for, and a torque that
reaches the motors 10 ms late (a controller across a network from its hardware, a process that was
not scheduled) then pumps energy in instead of damping it out, until the arm is thrown. Scaled by
M(q), every motion gets the designed bandwidth sqrt(kp / I): test_control.py holds arm7 with its
torques 16 ms late and 10 ms apart, where per-joint PD swings it. `pd` is for robots whose URDF
inertias are too wrong to trust.

Continuous joints take the short way round: their position error is wrapped to [-pi, pi).
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment import Embodiment, JointGroup


def wrap_to_pi(angles: np.ndarray) -> np.ndarray:
    """Angles [rad] mapped to [-pi, pi)."""
    return (np.asarray(angles) + np.pi) % (2 * np.pi) - np.pi


def position_error(group: JointGroup, q_target: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q* - q per joint, wrapped for continuous joints."""
    error = q_target - q
    return np.where(group.continuous, wrap_to_pi(error), error) if group.continuous.any() else error


def desired_acceleration(group: JointGroup, q: np.ndarray, qd: np.ndarray, q_target: np.ndarray,
                         qd_target: np.ndarray) -> np.ndarray:
    """qdd* [rad/s^2 | m/s^2] of the inverse-dynamics law: the PD gains per unit of the inertia they were tuned for."""
    tuned_inertia = group.kd ** 2 / (4.0 * group.kp)
    pd = group.kp * position_error(group, q_target, q) + group.kd * (np.asarray(qd_target) - qd)
    return pd / tuned_inertia


def group_command(group: JointGroup, q: np.ndarray, qd: np.ndarray, q_target: np.ndarray,
                  qd_target: np.ndarray, model_torque: np.ndarray | None) -> np.ndarray:
    """The command a group's hardware takes in its mode, for targets q*, qd* (all (n,) arrays).

    `model_torque` [Nm | N] is what the dynamics model adds for an effort group: M(q) qdd* + b for
    inverse dynamics, g(q) for pd (None: nothing, gravity compensation off).
    """
    if group.mode == "effort":
        tau = np.zeros(len(q)) if model_torque is None else np.asarray(model_torque, dtype=float)
        if group.effort_law == "pd":
            tau = tau + group.kp * position_error(group, q_target, q) + group.kd * (np.asarray(qd_target) - qd)
        return np.minimum(np.maximum(tau, -group.effort_limit), group.effort_limit)
    if group.mode == "position":
        return np.asarray(q_target, dtype=float).copy()
    return np.minimum(np.maximum(qd_target, -group.velocity_limit), group.velocity_limit)


class CommandLaw:
    """The commands of an embodiment's commanded groups, each in its mode, from the measured state.

    Joint vectors of targets hold the groups' joints in order; measured states are full
    (Kinematics.joint_names order), since the dynamics of the rest of the robot load the groups too.
    """

    def __init__(self, embodiment: Embodiment, groups: list[JointGroup], gravity_compensation: bool = True):
        self.kinematics = embodiment.kinematics
        self.groups = groups
        self.index = self.kinematics.index([j for g in groups for j in g.joints])
        self.slices, start = {}, 0
        for group in groups:
            self.slices[group.name] = slice(start, start + len(group.joints))
            start += len(group.joints)
        self.armature = np.concatenate([np.full(len(g.joints), g.armature) for g in groups])
        self.inverse_dynamics = [g for g in groups if g.effort_law == "inverse_dynamics"]
        self.gravity_compensation = gravity_compensation

    def commands(self, q_full: np.ndarray, qd_full: np.ndarray, q_target: np.ndarray,
                 qd_target: np.ndarray) -> dict[str, np.ndarray]:
        """{group: command} for targets q*, qd* (the groups' joints in order)."""
        q, qd = q_full[self.index], qd_full[self.index]
        model = self._model_torques(q_full, qd_full, q, qd, q_target, qd_target)
        return {group.name: group_command(group, q[part], qd[part], q_target[part], qd_target[part],
                                          None if model is None else model[part])
                for group in self.groups for part in (self.slices[group.name],)}

    def _model_torques(self, q_full, qd_full, q, qd, q_target, qd_target) -> np.ndarray | None:
        """M(q) qdd* + b(q, qd) with the inverse-dynamics groups' qdd* (zero elsewhere).

        g(q) when no group uses inverse dynamics; b and g only with gravity compensation.
        """
        if not self.inverse_dynamics:
            return self.kinematics.gravity(q_full)[self.index] if self.gravity_compensation else None
        acceleration = np.zeros(len(self.index))
        for group in self.inverse_dynamics:
            part = self.slices[group.name]
            acceleration[part] = desired_acceleration(group, q[part], qd[part], q_target[part], qd_target[part])
        mass, bias = self.kinematics.dynamics(q_full, qd_full)
        torque = (mass[np.ix_(self.index, self.index)] + np.diag(self.armature)) @ acceleration
        return torque + bias[self.index] if self.gravity_compensation else torque
