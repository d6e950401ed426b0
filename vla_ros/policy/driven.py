"""A policy as the chunk source of an in-process driver (vla_ros.sim.takeover), in any action space."""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment import Embodiment
from vla_ros.policy.interface import Observation, Policy
from vla_ros.policy.spaces import ChunkAdapter


class PolicyChunks:
    """`policy`'s chunks as joint targets in `embodiment`'s layout, for what the robot sees."""

    def __init__(self, policy: Policy, embodiment: Embodiment):
        self.policy, self.embodiment = policy, embodiment

    def reset(self) -> None:
        self.policy.reset()

    def chunk(self, images: dict[str, np.ndarray], state: np.ndarray, instruction: str,
              stamp: float) -> tuple[np.ndarray, float]:
        """(H, D) joint targets, [s] between them, for camera images, a (D,) state and an instruction."""
        chunk = self.policy.infer(Observation(images, state, instruction, stamp))
        return ChunkAdapter(self.embodiment, chunk.action_space).targets(chunk.actions, chunk.dt, state), chunk.dt
