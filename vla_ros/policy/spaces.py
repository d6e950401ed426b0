"""Action spaces: what a chunk's columns mean, and the one adapter to the joint positions the controller tracks.

A backend's chunk says its space (`ActionChunk.action_space`); `ChunkAdapter` turns it into targets in
the embodiment layout (joint positions, base velocities) before the controller's limits see it:

- `joint_position`: absolute joint positions [rad | m] (the builtin VLA's, today's default).
- `joint_delta`: positions relative to the observed state: q_k = q_obs + a_k.
- `joint_velocity`: velocities [rad/s | m/s] (times `velocity_scale`) integrated from the
  observed state over the chunk's dt: q_k = q_obs + dt * sum_{i<=k} a_i.
- `ee_delta`: per arm 6 columns, the tool's translation [m] (times `translation_scale`) and
  rotation as an axis-angle vector [rad] (times `rotation_scale`) per step, in the robot's root
  frame (`frame: base`) or the tool's own (`frame: tool`), accumulated from the observed pose.
- `ee_pose`: per arm 6 columns, the tool's absolute position [m] and axis-angle orientation [rad]
  in the root frame.

The ee spaces go through pink's differential IK (vla_ros.embodiment.diffik); steps it cannot
follow are clamped and counted (`ChunkAdapter.clamped_steps`). Gripper and hand columns are
absolute in every space: raw joint positions, or, with a `GripperMap`, the model's open..closed
value mapped onto the joint's range (closed at the limit farther from home). Base columns are
velocities in every space. Joints no column covers hold their observed position.

Columns are groups (a group's joints, an arm's 6 ee columns, a base's channels) or single
joints, in order; by default the embodiment's action groups in layout order (in the ee spaces,
without the torso and head, which hold).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pinocchio as pin

from vla_ros.embodiment import Embodiment, EmbodimentIO, JointGroup
from vla_ros.embodiment.config import END_EFFECTOR_KINDS
from vla_ros.errors import did_you_mean
from vla_ros.policy.interface import EE_SPACES, ActionSpace, ActionSpaceError

EE_COLUMNS = 6


@dataclass
class _Part:
    """Columns [start, stop) of a chunk and what they drive."""

    kind: str  # "joint" (follows the space), "absolute", "gripper", "ee", "base"
    start: int
    stop: int
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # layout slots
    group: JointGroup | None = None


class ChunkAdapter:
    """Chunks of one action space -> (H, D) targets in the embodiment layout (see the module docstring)."""

    def __init__(self, embodiment: Embodiment, space: ActionSpace):
        self.embodiment = embodiment
        self.space = space
        self.io = EmbodimentIO(embodiment)
        self.slot = {name: i for i, name in enumerate(self.io.names)}
        self.group_of = {joint: group for group in embodiment.commanded_groups for joint in group.joints}
        self.parts = self._parts()
        self.width = self.parts[-1].stop if self.parts else 0
        self.clamped_steps = 0
        self._ik = {}
        if space.name in EE_SPACES:
            from vla_ros.embodiment.diffik import ArmDiffIK  # pink: loaded only for the ee spaces
            self._ik = {p.group.name: ArmDiffIK(embodiment, p.group) for p in self.parts if p.kind == "ee"}

    def _default_columns(self) -> tuple[str, ...]:
        if self.space.name in EE_SPACES:
            return self.embodiment.tool_action_groups
        return tuple(self.embodiment.config.action.groups)

    def _parts(self) -> list[_Part]:
        columns = self.space.columns or self._default_columns()
        ee = self.space.name in EE_SPACES
        parts, start, covered = [], 0, set()
        for token in columns:
            base = self.embodiment.base
            if base is not None and token == base.name and self.io.base:
                part = _Part("base", start, start + len(base.channels),
                             np.array([self.slot[c] for c in base.channels]))
            elif token in self.embodiment.groups and token in self.embodiment.config.action.groups:
                group = self.embodiment.groups[token]
                if ee and group.kind == "arm":
                    if not group.ee_frame:
                        raise ActionSpaceError(f"action space {self.space.name} needs an end-effector frame, and "
                                               f"arm {group.name!r} of {self.embodiment.name} has none: set "
                                               f"groups.{group.name}.ee_frame in the embodiment file")
                    part = _Part("ee", start, start + EE_COLUMNS, np.array([self.slot[j] for j in group.joints]),
                                 group)
                else:
                    part = self._joint_part(group, group.joints, start, ee)
            elif token in self.group_of and token in self.slot:
                group = self.group_of[token]
                if ee and group.kind == "arm":
                    raise ActionSpaceError(f"column {token!r} is one joint of arm {group.name!r}: in "
                                           f"{self.space.name} an arm takes its {EE_COLUMNS} columns whole")
                part = self._joint_part(group, (token,), start, ee)
            else:
                known = [*self.embodiment.config.action.groups, *self.io.joints]
                raise ActionSpaceError(f"action column {token!r} is no action group or joint of "
                                       f"{self.embodiment.name}{did_you_mean(token, known)}")
            twice = covered & set(part.targets.tolist())
            if twice:
                raise ActionSpaceError(f"action column {token!r} drives {self.io.names[min(twice)]!r} a second time")
            covered |= set(part.targets.tolist())
            parts.append(part)
            start = part.stop
        if ee and not any(p.kind == "ee" for p in parts):
            raise ActionSpaceError(f"action space {self.space.name} needs an arm with an end-effector frame; "
                                   f"{self.embodiment.name} has none in its columns "
                                   f"({', '.join(columns) or 'no action groups'})")
        return parts

    def _joint_part(self, group: JointGroup, joints: tuple[str, ...], start: int, ee: bool) -> _Part:
        kind = "gripper" if group.kind in END_EFFECTOR_KINDS else ("absolute" if ee else "joint")
        return _Part(kind, start, start + len(joints), np.array([self.slot[j] for j in joints]), group)

    def check_width(self, actions: np.ndarray) -> None:
        """ActionSpaceError unless `actions` is (H, width) and finite."""
        actions = np.asarray(actions)
        if actions.ndim != 2 or actions.shape[1] != self.width or len(actions) == 0:
            raise ActionSpaceError(
                f"a chunk of shape {actions.shape} fits no action space of {self.embodiment.name} as configured: "
                f"{self.space.name} with columns {self.describe()} takes (H, {self.width})")
        if not np.all(np.isfinite(actions)):
            raise ActionSpaceError(f"the chunk holds {int(np.sum(~np.isfinite(actions)))} non-finite values")

    def describe(self) -> str:
        """The columns, e.g. 'arm[0:6] gripper[6:7]' (a single joint by its own name)."""
        names = []
        for part in self.parts:
            whole = part.group is None or part.kind == "ee" or len(part.targets) == len(part.group.joints)
            name = (part.group.name if part.group else self.io.base) if whole else self.io.names[part.targets[0]]
            names.append(f"{name}[{part.start}:{part.stop}]")
        return " ".join(names)

    def targets(self, actions: np.ndarray, dt: float, state: np.ndarray) -> np.ndarray:
        """(H, D) targets in the embodiment layout for a chunk of this space.

        Args:
            actions: (H, width) the chunk's columns.
            dt: [s] time between actions.
            state: (D,) the observed state the chunk was computed from (embodiment layout).
        """
        self.check_width(actions)
        actions = np.asarray(actions, dtype=float)
        state = np.asarray(state, dtype=float)
        horizon = len(actions)
        out = self.io.hold(state, horizon).astype(float)
        for part in self.parts:
            values = actions[:, part.start:part.stop]
            if part.kind == "base":
                out[:, part.targets] = values
            elif part.kind == "gripper":
                out[:, part.targets] = self._gripper(part.group, part.targets, values)
            elif part.kind == "absolute":
                out[:, part.targets] = values
            elif part.kind == "joint":
                out[:, part.targets] = self._joints(values, state[part.targets], dt)
        ee_parts = [p for p in self.parts if p.kind == "ee"]
        if ee_parts:
            q_full = self.io.joint_vector(state)
            for part in ee_parts:
                ik = self._ik[part.group.name]
                poses = self._poses(ik.pose(q_full), actions[:, part.start:part.stop])
                result = ik.follow(q_full, poses, dt)
                self.clamped_steps += result.clamped
                out[:, part.targets] = result.positions
        return out.astype(np.float32)

    def _joints(self, values: np.ndarray, observed: np.ndarray, dt: float) -> np.ndarray:
        name = self.space.name
        if name == "joint_delta":
            return observed + values
        if name == "joint_velocity":
            return observed + dt * np.cumsum(values * self.space.velocity_scale, axis=0)
        return values

    def _gripper(self, group: JointGroup, targets: np.ndarray, values: np.ndarray) -> np.ndarray:
        if self.space.gripper is None:
            return values
        index = np.array([group.joints.index(self.io.names[t]) for t in targets])
        opened, closed = (limit[index] for limit in group.grip_range())
        return opened + self.space.gripper.closure(values) * (closed - opened)

    def _poses(self, start: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(H, 4, 4) tool poses in the root frame from ee columns (H, 6)."""
        poses = np.empty((len(values), 4, 4))
        if self.space.name == "ee_pose":
            poses[:] = np.eye(4)
            for k, row in enumerate(values):
                poses[k, :3, :3] = pin.exp3(row[3:])
                poses[k, :3, 3] = row[:3]
            return poses
        pose = start.copy()
        for k, row in enumerate(values):
            translation = row[:3] * self.space.translation_scale
            rotation = pin.exp3(row[3:] * self.space.rotation_scale)
            if self.space.frame == "base":
                pose[:3, 3] += translation
                pose[:3, :3] = rotation @ pose[:3, :3]
            else:
                pose[:3, 3] += pose[:3, :3] @ translation
                pose[:3, :3] = pose[:3, :3] @ rotation
            poses[k] = pose
        return poses
