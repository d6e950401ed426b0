"""Teleoperation: a person's input turned into short joint chunks the controller tracks. No ROS.

Two inputs, each ticked by teleop_node at its rate with the newest input and joint state:

- `JoyTeleop`: a gamepad or 3D mouse (sensor_msgs/Joy). Mapped axes give the tool's twist in the
  robot's root frame (linear [m/s], angular [rad/s], scaled from -1..1 after a dead zone); each tick
  pink's differential IK (vla_ros.embodiment.diffik) turns the twist over the next `steps` ticks
  into joint positions, under the joint and velocity limits. The arm's targets advance from where
  the last tick put them, not from the measured joints, so the chunk does not lag the tracking; a
  target the limits keep out of reach is not wound up (the next tick starts from what the IK
  reached). One button closes the gripper, another opens it.
- `LeaderTeleop`: a leader arm (sensor_msgs/JointState) whose joints are mapped by name onto the
  follower's commanded joints (an optional prefix stripped): each of its messages is a target
  `lead_s` ahead, with its velocities (or ones estimated from its last two messages). A follower
  further from the leader than `lead_s` at `catch_up_speed` allows (a takeover with the two arms
  apart) goes there at that speed instead, resting at the end: never a lunge at full joint speed.

Inputs that do not fit are refused whole with the reason (`TeleopInputError`); the node then
publishes nothing and the controller holds. Limits stay the controller's: it tracks teleop chunks
through the same limiter and watchdogs as the policy's.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from transforms3d.axangles import axangle2mat

from vla_ros.control.chunk import JointChunk
from vla_ros.errors import VlaRosError, did_you_mean
from vla_ros.params import Params, param

if TYPE_CHECKING:  # the graph's description (vla_ros.bringup) imports INPUTS: no kinematics at import
    from vla_ros.embodiment import Embodiment, JointGroup

INPUTS = ("joy", "leader")  # what a person drives with: a gamepad, a leader arm
TWIST_AXES = ("x", "y", "z", "roll", "pitch", "yaw")
REANCHOR_RAD = 0.1  # [rad | m] measured this far from the teleop's own targets: start again from the measured arm
LIMIT_SLACK = 0.5  # [rad | m] a leader joint further outside the follower's limits is refused (inside: clamped later)
CONTINUOUS_RANGE = 100.0  # [rad] a continuous joint's leader position beyond this is refused


class TeleopInputError(VlaRosError):
    """An input message teleoperation cannot use; nothing is commanded from it."""


@dataclass(frozen=True)
class JoyMapping(Params):
    """Which Joy axes and buttons do what (defaults: a standard gamepad as the joy node reports it)."""

    axis_x: int = param(1, "Joy axis of the tool's forward motion (+x of the root frame); -1: none", low=-1, high=63)
    axis_y: int = param(0, "Joy axis of the tool's leftward motion (+y); -1: none", low=-1, high=63)
    axis_z: int = param(4, "Joy axis of the tool's upward motion (+z); -1: none", low=-1, high=63)
    axis_roll: int = param(-1, "Joy axis of the tool's rotation about x; -1: none", low=-1, high=63)
    axis_pitch: int = param(-1, "Joy axis of the tool's rotation about y; -1: none", low=-1, high=63)
    axis_yaw: int = param(3, "Joy axis of the tool's rotation about z; -1: none", low=-1, high=63)
    linear_speed: float = param(0.1, "tool speed at full deflection [m/s]", low=0.0, high=2.0)
    angular_speed: float = param(0.5, "tool rotation speed at full deflection [rad/s]", low=0.0, high=5.0)
    deadzone: float = param(0.1, "deflections below this are zero (stick drift)", low=0.0, high=0.9)
    deadman_button: int = param(4, "Joy button held while a person drives (-1: none; vla/intervention starts and "
                                    "ends the takeover)", low=-1, high=63)
    close_button: int = param(0, "Joy button that closes the gripper (-1: none)", low=-1, high=63)
    open_button: int = param(1, "Joy button that opens the gripper (-1: none)", low=-1, high=63)

    def axes(self) -> dict[str, int]:
        """Twist component -> the Joy axis that drives it (unmapped ones left out)."""
        return {name: index for name in TWIST_AXES if (index := getattr(self, f"axis_{name}")) >= 0}

    def buttons(self) -> dict[str, int]:
        """Button role -> Joy button index (unmapped ones left out)."""
        roles = {"deadman_button": self.deadman_button, "close_button": self.close_button,
                 "open_button": self.open_button}
        return {role: index for role, index in roles.items() if index >= 0}

    def check_fits(self, axes: Sequence[float], buttons: Sequence[int]) -> None:
        """TeleopInputError naming the first mapped axis or button a Joy message lacks, or a mapped axis not finite."""
        for name, index in self.axes().items():
            if index >= len(axes):
                raise TeleopInputError(f"joy has {len(axes)} axes, but axis_{name} maps axis {index}")
            if not np.isfinite(axes[index]):
                raise TeleopInputError(f"joy axis {index} (axis_{name}) is {axes[index]}")
        for role, index in self.buttons().items():
            if index >= len(buttons):
                raise TeleopInputError(f"joy has {len(buttons)} buttons, but {role} maps button {index}")

    def twist(self, axes) -> np.ndarray:
        """(6,) the tool's twist [m/s, rad/s] (linear xyz, angular xyz) from Joy axes in -1..1 (beyond: clipped).

        The axes are those of a message `check_fits` took.
        """
        twist = np.zeros(6)
        for name, index in self.axes().items():
            value = float(np.clip(axes[index], -1.0, 1.0))  # finite: check_fits said so
            if abs(value) < self.deadzone:
                continue
            speed = self.linear_speed if TWIST_AXES.index(name) < 3 else self.angular_speed
            twist[TWIST_AXES.index(name)] = speed * np.sign(value) * (abs(value) - self.deadzone) / (1 - self.deadzone)
        return twist

    def pressed(self, buttons, role: str) -> bool:
        """Whether the button of `role` (e.g. "deadman_button") is down; False when it is unmapped."""
        index = self.buttons().get(role)
        return index is not None and bool(buttons[index])


def teleop_arm(embodiment: Embodiment, name: str = "") -> JointGroup:
    """The arm a person drives: `name`, or the first arm with an ee_frame (VlaRosError if none fits)."""
    arms = [g for g in embodiment.commanded_groups if g.kind == "arm" and g.ee_frame]
    if not arms:
        raise VlaRosError(f"{embodiment.name} has no arm with an ee_frame to teleoperate")
    if not name:
        return arms[0]
    for arm in arms:
        if arm.name == name:
            return arm
    names = [a.name for a in arms]
    raise VlaRosError(f"{embodiment.name} has no arm {name!r} with an ee_frame (arms: {', '.join(names)})"
                      f"{did_you_mean(name, names)}")


class JoyTeleop:
    """A gamepad's twist and buttons -> chunks of one arm's joints and its gripper (see the module docstring)."""

    def __init__(self, embodiment: Embodiment, mapping: JoyMapping, arm: str = "", dt: float = 0.05,
                 steps: int = 5):
        from vla_ros.embodiment.diffik import ArmDiffIK  # pink: loaded only for gamepad teleoperation

        self.mapping = mapping
        self.arm = teleop_arm(embodiment, arm)
        self.ik = ArmDiffIK(embodiment, self.arm)
        self.gripper = embodiment.end_effector(self.arm)
        self.grip = self.gripper.grip_range() if self.gripper is not None else None
        self.joints = self.arm.joints + (self.gripper.joints if self.gripper is not None else ())
        index = embodiment.kinematics.index
        self.arm_index = index(self.arm.joints)
        self.gripper_index = index(self.gripper.joints) if self.gripper is not None else None
        self.dt, self.steps = dt, steps
        self.q_arm: np.ndarray | None = None  # the arm's targets, advanced each tick
        self.q_gripper: np.ndarray | None = None

    def restart(self) -> None:
        """Forget the targets: the next tick starts from the measured joints (a new takeover)."""
        self.q_arm = self.q_gripper = None

    def chunk(self, q_full: np.ndarray, axes, buttons, stamp: float) -> JointChunk:
        """The chunk for one tick at `stamp` [s] from the measured joints (Kinematics order) and Joy input.

        TeleopInputError when the Joy message lacks a mapped axis or button or holds a non-finite axis.
        """
        self.mapping.check_fits(axes, buttons)
        twist = self.mapping.twist(axes)
        measured = q_full[self.arm_index]
        if self.q_arm is None or np.max(np.abs(measured - self.q_arm)) > REANCHOR_RAD:
            self.q_arm = measured.copy()
        if self.gripper is not None:
            if self.q_gripper is None:
                self.q_gripper = q_full[self.gripper_index].copy()
            if self.mapping.pressed(buttons, "close_button"):
                self.q_gripper = self.grip[1].copy()
            elif self.mapping.pressed(buttons, "open_button"):
                self.q_gripper = self.grip[0].copy()
        if np.any(twist):
            q = q_full.copy()
            q[self.arm_index] = self.q_arm
            start = self.ik.pose(q)
            poses = np.array([_moved(start, twist, k * self.dt) for k in range(1, self.steps + 1)])
            arm = self.ik.follow(q, poses, self.dt).positions
            self.q_arm = arm[0].copy()
        else:  # the stick at rest: hold exactly (the IK's posture task would creep)
            arm = np.tile(self.q_arm, (self.steps, 1))
        positions = arm if self.gripper is None else np.hstack([arm, np.tile(self.q_gripper, (len(arm), 1))])
        return JointChunk(stamp, self.joints, self.dt * np.arange(1, self.steps + 1), positions)


def _moved(pose: np.ndarray, twist: np.ndarray, seconds: float) -> np.ndarray:
    """`pose` (4, 4) moved by `twist` (root frame, about the tool's own origin) for `seconds`."""
    moved = pose.copy()
    moved[:3, 3] += twist[:3] * seconds
    angle = float(np.linalg.norm(twist[3:])) * seconds
    if angle > 0:
        moved[:3, :3] = axangle2mat(twist[3:], angle) @ pose[:3, :3]
    return moved


class LeaderTeleop:
    """A leader arm's joint positions -> chunks of the follower's joints of the same names."""

    def __init__(self, embodiment: Embodiment, prefix: str = "", lead_s: float = 0.1, catch_up_speed: float = 0.5):
        self.embodiment = embodiment
        self.prefix = prefix
        self.lead_s = lead_s
        self.catch_up_speed = catch_up_speed
        self.delegated = {j for g in embodiment.delegated_groups for j in g.joints}
        groups = {j: g for g in embodiment.commanded_groups for j in g.joints}
        self.commanded = set(groups)
        # A leader this far outside a joint's limits is not a leader arm of this robot (continuous joints: 100 rad).
        self.lower = {j: g.lower[g.joints.index(j)] - LIMIT_SLACK for j, g in groups.items()}
        self.upper = {j: g.upper[g.joints.index(j)] + LIMIT_SLACK for j, g in groups.items()}
        self.index = {j: i for i, j in enumerate(embodiment.kinematics.joint_names)}
        self._last: tuple[float, tuple[str, ...], np.ndarray] | None = None  # (stamp, joints, positions)

    def restart(self) -> None:
        """Forget the leader's last message (its velocity is estimated afresh)."""
        self._last = None

    def joints(self, names) -> tuple[str, ...]:
        """The follower's joints for the leader's `names` (TeleopInputError for any that is not commanded)."""
        mapped = tuple(name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name
                       for name in names)
        if not mapped:
            raise TeleopInputError("leader joint_states has no joint names")
        delegated = [name for name in mapped if name in self.delegated]
        if delegated:
            raise TeleopInputError(f"leader joints {delegated} are delegated to the vendor stack and never commanded")
        unknown = [name for name in mapped if name not in self.commanded]
        if unknown:
            hint = did_you_mean(unknown[0], sorted(self.commanded))
            raise TeleopInputError(f"leader joints {unknown} are not commanded joints of {self.embodiment.name}"
                                   f"{f' (after stripping the prefix {self.prefix!r})' if self.prefix else ''}{hint}")
        twice = sorted({name for name in mapped if mapped.count(name) > 1})
        if twice:
            raise TeleopInputError(f"leader joints {twice} appear more than once")
        return mapped

    def chunk(self, names, positions, velocities, stamp: float, q_full: np.ndarray,
              measured: float | None = None) -> JointChunk:
        """The follower's target for one leader message read at `stamp` [s], from the measured joints `q_full`.

        `measured` [s] is when the leader measured it (its stamp; default `stamp`): velocities missing
        from the message are estimated from the last two.

        TeleopInputError when the message does not fit: unknown, delegated or repeated joints, a
        position count that is not the name count, positions not finite or far outside the limits.
        """
        joints = self.joints(names)
        positions = np.asarray(positions, dtype=float)
        if positions.shape != (len(joints),):
            raise TeleopInputError(f"leader joint_states has {len(positions)} positions for {len(joints)} names")
        if not np.all(np.isfinite(positions)):
            raise TeleopInputError("leader joint_states has non-finite positions")
        for joint, value in zip(joints, positions):
            low, high = self.lower[joint], self.upper[joint]
            if not (max(low, -CONTINUOUS_RANGE) <= value <= min(high, CONTINUOUS_RANGE)):
                raise TeleopInputError(f"leader joint {joint} at {value:.3f} is far outside the follower's limits "
                                       f"[{low + LIMIT_SLACK:.3f}, {high - LIMIT_SLACK:.3f}]")
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != positions.shape or not np.all(np.isfinite(velocities)):
            velocities = self._estimate(joints, positions, stamp if measured is None else measured)
        self._last = (stamp if measured is None else measured, joints, positions)
        apart = float(np.max(np.abs(positions - q_full[[self.index[j] for j in joints]])))
        if apart > self.catch_up_speed * self.lead_s:  # catch up slowly, and arrive at rest
            return JointChunk(stamp, joints, np.array([apart / self.catch_up_speed]), positions[None],
                              np.zeros((1, len(joints))))
        return JointChunk(stamp, joints, np.array([self.lead_s]), positions[None], velocities[None])

    def _estimate(self, joints: tuple[str, ...], positions: np.ndarray, stamp: float) -> np.ndarray:
        """Velocities from the previous message of the same joints; zero without one."""
        if self._last is None or self._last[1] != joints or stamp <= self._last[0]:
            return np.zeros_like(positions)
        return (positions - self._last[2]) / (stamp - self._last[0])
