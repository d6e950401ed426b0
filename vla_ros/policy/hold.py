"""`hold`: chunks that keep the robot where it is (joints at the observed pose, base stopped)."""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy.interface import ActionChunk, Observation, Policy, PolicyError
from vla_ros.policy.registry import backend, describe


@backend("hold")
class HoldPolicy(Policy):
    """Answers every observation with `chunk_length` copies of its own joint positions.

    A safe stand-in while a model is missing, and a backend with no model time for benchmarks.
    """

    def __init__(self, embodiment: Embodiment, chunk_length: int = 25, dt: float = 0.04):
        if chunk_length < 1 or not dt > 0:
            raise ValueError("chunk_length must be >= 1 and dt > 0")
        self.io = EmbodimentIO(embodiment)
        self.chunk_length = int(chunk_length)
        self.dt = float(dt)
        self._metadata = describe(embodiment, "hold", self.chunk_length, self.dt)

    @property
    def metadata(self) -> dict:
        return self._metadata

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        if observation.state.shape != (self.io.size,):
            raise PolicyError(f"state has shape {observation.state.shape}, expected ({self.io.size},)")
        return ActionChunk(self.io.hold(observation.state, self.chunk_length), self.dt, observation.stamp)
