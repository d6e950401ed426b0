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

from dataclasses import replace

import numpy as np
import pinocchio as pin

from vla_ros.data.dataset import EpisodeSamples
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy.interface import ActionSpace
from vla_ros.policy.spaces import ChunkAdapter

JOINT = "joint_position"
EE_POSE = "ee_pose"
CODINGS = (JOINT, EE_POSE)
EE_AXES = ("x", "y", "z", "rx", "ry", "rz")


class EeCoding:
    """One body's joint-layout actions <-> its ee_pose columns relative to the state (see the module docstring)."""

    def __init__(self, embodiment: Embodiment):
        self.space = ActionSpace(EE_POSE)
        self.io = EmbodimentIO(embodiment)
        self.kinematics = embodiment.kinematics
        adapter = ChunkAdapter(embodiment, self.space)
        self.parts = adapter.parts
        self.width = adapter.width
        self.names = [name for part in self.parts for name in (
            [f"{part.group.name}.{axis}" for axis in EE_AXES] if part.kind == "ee"
            else [self.io.names[t] for t in part.targets])]

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
            if part.kind != "ee":
                out[..., columns] = actions[..., part.targets] - states[:, None, part.targets]
                continue
            frame = part.group.ee_frame
            for i, (state, targets) in enumerate(zip(states, actions)):
                start = self._pose(state, frame)
                for k, target in enumerate(targets):
                    pose = self._pose(target, frame)
                    out[i, k, part.start:part.start + 3] = pose[:3, 3] - start[:3, 3]
                    out[i, k, part.start + 3:part.stop] = pin.log3(start[:3, :3].T @ pose[:3, :3])
        return out

    def chunk(self, values: np.ndarray, state: np.ndarray) -> np.ndarray:
        """(H, width) relative columns at `state` (D,) -> (H, width) absolute ee_pose columns."""
        values, state = np.asarray(values, dtype=float), np.asarray(state, dtype=float)
        out = values.copy()
        for part in self.parts:
            if part.kind == "base":
                continue
            if part.kind != "ee":
                out[:, part.start:part.stop] = state[part.targets] + values[:, part.start:part.stop]
                continue
            start = self._pose(state, part.group.ee_frame)
            out[:, part.start:part.start + 3] = start[:3, 3] + values[:, part.start:part.start + 3]
            out[:, part.start + 3:part.stop] = [pin.log3(start[:3, :3] @ pin.exp3(r))
                                                for r in values[:, part.start + 3:part.stop]]
        return out.astype(np.float32)


def code_actions(samples: list[EpisodeSamples], embodiments: dict[str, Embodiment],
                 action_space: str) -> list[EpisodeSamples]:
    """`samples` with their actions as `action_space` has the model learn them (as they are for joint_position)."""
    if action_space == JOINT:
        return samples
    codings = {name: EeCoding(body) for name, body in embodiments.items()}
    return [replace(s, actions=codings[s.embodiment].encode(s.actions, s.states)) for s in samples]
