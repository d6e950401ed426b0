"""One embodiment's states, actions and goals <-> the model's normalised padded vectors.

Actions are learned as offsets from the current state on joint slots (absolute on base velocity
slots), each slot normalised by the training data's mean and std (vla_ros.model.config
EmbodimentStats); padding slots stay 0. Actions may have columns of their own (end-effector
actions, vla_ros.model.ee_actions), in slots of their own. Training and inference both go through here.
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment.layout import pad
from vla_ros.model.config import EmbodimentStats, relative_offsets


class Normalization:
    """One embodiment's state/action <-> the model's normalised padded vectors (torch or numpy)."""

    def __init__(self, stats: EmbodimentStats, width: int):
        self.mask = np.array(stats.mask if stats.action_mask is None else stats.action_mask, dtype=bool)  # actions
        self.state_mask = np.array(stats.mask, dtype=bool)
        self.width = width
        self.relative = np.array(stats.relative, dtype=bool)
        self.state_mean, self.state_std = np.array(stats.state_mean, np.float32), np.array(stats.state_std, np.float32)
        self.action_mean, self.action_std = np.array(stats.action_mean, np.float32), np.array(stats.action_std,
                                                                                              np.float32)
        self.has_goal = stats.has_goal
        self.goal_in_tool = stats.goal_in_tool
        if self.has_goal:
            self.goal_mean, self.goal_std = np.array(stats.goal_mean, np.float32), np.array(stats.goal_std, np.float32)

    def state(self, states: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., width)."""
        return pad(((states - self.state_mean) / self.state_std).astype(np.float32), self.state_mask)

    def actions(self, actions: np.ndarray, states: np.ndarray) -> np.ndarray:
        """(B, H, A) actions with their states (B, D) -> (B, H, width) normalised offsets."""
        offsets = relative_offsets(actions, states, self.relative)
        return pad(((offsets - self.action_mean) / self.action_std).astype(np.float32), self.mask)

    def unnormalize(self, vectors: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Inverse of actions(): (B, H, width) -> (B, H, A)."""
        actions = vectors[..., self.mask] * self.action_std + self.action_mean
        slots = np.flatnonzero(self.relative)
        actions[..., slots] += np.asarray(states, dtype=actions.dtype)[:, None, slots]
        return actions

    def goal(self, goals: np.ndarray) -> np.ndarray:
        """(..., 3) [m] -> normalised."""
        return ((goals - self.goal_mean) / self.goal_std).astype(np.float32)

    def goal_metres(self, normalised: np.ndarray) -> np.ndarray:
        """Inverse of goal(): normalised -> (..., 3) [m]."""
        return normalised * self.goal_std + self.goal_mean
