"""`replay`: plays a recorded sequence of chunks, one per request, whatever the observation.

The recording is an .npz file with `actions` (N, H, D) in the embodiment layout and `dt` [s]
(`save_recording` writes one). Each chunk is stamped with the observation it answers; after the
last one it starts over (`loop: true`) or keeps answering with the last.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy.interface import ActionChunk, Observation, Policy, PolicyError
from vla_ros.policy.registry import backend, describe


def save_recording(path: str | Path, actions: np.ndarray, dt: float) -> None:
    """Write chunks (N, H, D) and their dt for the replay backend."""
    np.savez(path, actions=np.asarray(actions, dtype=np.float32), dt=np.float64(dt))


@backend("replay")
class ReplayPolicy(Policy):
    """Recorded chunks played back, one per request."""

    def __init__(self, embodiment: Embodiment, path: str, loop: bool = True):
        io = EmbodimentIO(embodiment)
        try:
            with np.load(Path(path).expanduser()) as recording:
                self.chunks = np.asarray(recording["actions"], dtype=np.float32)
                self.dt = float(recording["dt"])
        except (OSError, KeyError, ValueError) as error:
            raise PolicyError(f"replay: cannot read {path} as a recording (an .npz with 'actions' and 'dt'): "
                              f"{error}") from None
        if self.chunks.ndim != 3 or self.chunks.shape[2] != io.size or not len(self.chunks):
            raise PolicyError(f"replay: {path} holds actions of shape {self.chunks.shape}; "
                              f"embodiment {embodiment.name} needs (N, H, {io.size}) ({', '.join(io.names)})")
        if not (np.all(np.isfinite(self.chunks)) and self.dt > 0):
            raise PolicyError(f"replay: {path} has non-finite actions or dt {self.dt} <= 0")
        self.loop = loop
        self.position = 0
        self._metadata = describe(embodiment, "replay", self.chunks.shape[1], self.dt)

    @property
    def metadata(self) -> dict:
        return self._metadata

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        chunk = self.chunks[self.position]
        self.position += 1
        if self.position == len(self.chunks):
            self.position = 0 if self.loop else len(self.chunks) - 1
        return ActionChunk(chunk.copy(), self.dt, observation.stamp)

    def reset(self) -> None:
        self.position = 0

    @property
    def state(self) -> str:
        return f"chunk {self.position + 1} of {len(self.chunks)}"
