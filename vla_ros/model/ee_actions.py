"""End-effector actions for the built-in VLA: what `vla-ros train --action-space ee_pose` learns.

By default a body's actions are its joints' offsets from the state (`joint_position`). In
`ee_pose` they are the columns of the ee_pose action space (vla_ros.policy.spaces) made relative
to the state: per arm, the tool's target position less its position at the state [m, root frame]
and the rotation from the state's tool orientation to the target's as an axis-angle vector in the
tool's frame [rad]; gripper and hand joints as offsets from the state; base velocities as they
are. Torso and head hold. Arms of any joint count then share six columns that mean the same thing
on every body. `EeCoding.chunk` turns the model's values back into an ee_pose chunk (absolute
tool poses in the root frame), which the policy node follows through differential IK.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from vla_ros.embodiment import Embodiment, EmbodimentError, EmbodimentIO

JOINT = "joint_position"
EE_POSE = "ee_pose"
EE_AXES = ("x", "y", "z", "rx", "ry", "rz")


@dataclass(frozen=True)
class Columns:
    """Columns [start, stop) of one action group: an arm's tool ("ee"), joints ("joints") or a base ("base")."""

    kind: str
    start: int
    stop: int
    targets: np.ndarray  # the layout slots they stand for
    names: tuple[str, ...]
    frame: str | None = None  # an arm's tool frame


class EeCoding:
    """One body's joint-layout actions <-> its ee_pose columns relative to the state (see the module docstring).

    The columns are the ee_pose space's default ones (vla_ros.policy.spaces): the embodiment's
    tool_action_groups, an arm as its tool's 6, a gripper or hand as its joints, a base as its channels.
    """

    def __init__(self, embodiment: Embodiment):
        self.io = EmbodimentIO(embodiment)
        self.kinematics = embodiment.kinematics
        slot = {name: i for i, name in enumerate(self.io.names)}
        self.parts, start, base = [], 0, embodiment.base
        for name in embodiment.tool_action_groups:
            if base is not None and name == base.name:
                part = Columns("base", start, start + len(base.channels), np.array([slot[c] for c in base.channels]),
                               tuple(base.channels))
            elif embodiment.groups[name].kind == "arm":
                group = embodiment.groups[name]
                if not group.ee_frame:
                    raise EmbodimentError(f"end-effector actions need the tool frame of arm {name!r} of "
                                          f"{embodiment.name}: set groups.{name}.ee_frame in the embodiment file")
                part = Columns("ee", start, start + len(EE_AXES), np.array([slot[j] for j in group.joints]),
                               tuple(f"{name}.{axis}" for axis in EE_AXES), group.ee_frame)
            else:
                joints = embodiment.groups[name].joints
                part = Columns("joints", start, start + len(joints), np.array([slot[j] for j in joints]),
                               tuple(joints))
            self.parts.append(part)
            start = part.stop
        self.width = start
        self.names = [name for part in self.parts for name in part.names]

    def mask(self, width: int) -> list[bool]:
        """The padded vector's slots these columns take: the first `self.width`."""
        return [i < self.width for i in range(width)]

    def _pose(self, values: np.ndarray, frame: str) -> np.ndarray:
        return self.kinematics.frame_pose(self.io.joint_vector(values), frame)

    def encode(self, actions: np.ndarray, states: np.ndarray) -> np.ndarray:
        """(N, H, D) targets in the embodiment layout with their states (N, D) -> (N, H, width) relative columns."""
        actions, states = np.asarray(actions, dtype=float), np.asarray(states, dtype=float)
        out = np.zeros((*actions.shape[:2], self.width), np.float32)
        for part in self.parts:
            columns = slice(part.start, part.stop)
            if part.kind == "base":
                out[..., columns] = actions[..., part.targets]
                continue
            if part.kind == "joints":
                out[..., columns] = actions[..., part.targets] - states[:, None, part.targets]
                continue
            for i, (state, targets) in enumerate(zip(states, actions)):
                start = self._pose(state, part.frame)
                for k, target in enumerate(targets):
                    pose = self._pose(target, part.frame)
                    out[i, k, part.start:part.start + 3] = pose[:3, 3] - start[:3, 3]
                    out[i, k, part.start + 3:part.stop] = pin.log3(start[:3, :3].T @ pose[:3, :3])
        return out

    def chunk(self, values: np.ndarray, state: np.ndarray) -> np.ndarray:
        """(H, width) relative columns at `state` (D,) -> (H, width) absolute ee_pose columns."""
        values, state = np.asarray(values, dtype=float), np.asarray(state, dtype=float)
        out = values.copy()
        for part in self.parts:
            if part.kind == "joints":
                out[:, part.start:part.stop] = state[part.targets] + values[:, part.start:part.stop]
            elif part.kind == "ee":
                start = self._pose(state, part.frame)
                out[:, part.start:part.start + 3] = start[:3, 3] + values[:, part.start:part.start + 3]
                out[:, part.start + 3:part.stop] = [pin.log3(start[:3, :3] @ pin.exp3(r))
                                                    for r in values[:, part.start + 3:part.stop]]
        return out.astype(np.float32)
