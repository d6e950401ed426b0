"""The embodiment's joints and base <-> the policy's vectors: applied here, and only here.

`EmbodimentIO` turns joint positions and base velocities into a state vector in the embodiment
layout and splits action chunks back into joint targets and base velocities; `unpad` takes a
padded vector (a server that answers in the model's width) back to the embodiment layout.
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment.embodiment import Embodiment


class EmbodimentIO:
    """One embodiment's view of the policy vectors.

    Attributes:
        names: (D,) slot names in the embodiment layout.
        joints: the joint slots' names, in layout order (what an action chunk commands).
        base: the base group's name, or None when the layout has no base slots.
    """

    def __init__(self, embodiment: Embodiment):
        self.layout = embodiment.layout
        self.names = self.layout.names
        self.base = embodiment.base.name if embodiment.base and embodiment.base.name in \
            [s.group for s in self.layout.slots] else None
        columns, start = {}, 0
        for slot in self.layout.slots:
            columns[slot.group] = np.arange(start, start + len(slot.names))
            start += len(slot.names)
        self._base_columns = columns.pop(self.base) if self.base else np.zeros(0, dtype=int)
        self._joint_columns = np.concatenate([np.zeros(0, dtype=int), *columns.values()])
        self.joints = tuple(self.names[i] for i in self._joint_columns)
        self._slot = {name: i for i, name in enumerate(self.names)}
        self._kinematic_names = [j.name for j in embodiment.description.movable_joints if j.mimic is None]
        self.home = self.state(np.concatenate([np.zeros(0), *(embodiment.groups[g].home for g in columns)]))

    @property
    def size(self) -> int:
        return len(self.names)

    def state(self, joint_positions: np.ndarray, base_velocity: np.ndarray | None = None) -> np.ndarray:
        """(D,) float32 state from positions of `joints` (in that order) and the base's (vx, vy, wz)."""
        state = np.zeros(self.size, dtype=np.float32)
        state[self._joint_columns] = joint_positions
        if base_velocity is not None and len(self._base_columns):
            state[self._base_columns] = base_velocity
        return state

    def joint_vector(self, state: np.ndarray) -> np.ndarray:
        """Kinematics.joint_names order from a state: its joints, every other joint (legs, wheels) at 0."""
        return np.array([state[self._slot[n]] if n in self._slot else 0.0 for n in self._kinematic_names])

    def split(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, D) actions -> joint targets (H, len(joints)) and base velocities (H, 3) or None."""
        actions = np.asarray(actions, dtype=float)
        base = actions[:, self._base_columns] if self.base else None
        return actions[:, self._joint_columns], base

    def hold(self, state: np.ndarray, horizon: int) -> np.ndarray:
        """(horizon, D) actions that keep the joints where `state` has them and stop the base."""
        actions = np.tile(np.asarray(state, dtype=np.float32), (horizon, 1))
        actions[:, self._base_columns] = 0.0
        return actions

    def unpad(self, vectors: np.ndarray) -> np.ndarray:
        """(..., width) -> (..., D): the mask applied."""
        return self.layout.unpad(vectors)
