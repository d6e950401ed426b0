"""What every policy backend speaks: observations in, action chunks out (docs/architecture.md).

Vectors are in the embodiment layout: the used slots of the embodiment's action vector, in order
(`embodiment.layout.names`): joint positions [rad | m] for joint groups, base velocities
(vx [m/s], vy [m/s], wz [rad/s]) for a mobile base. The padded width and the mask are the
model's business (`ActionLayout.pad` / `unpad`); nothing outside a model sees padding.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError


class PolicyError(VlaRosError):
    """A policy that cannot answer this request: a bad observation, a backend's own error."""


class BackendUnavailable(PolicyError):
    """The backend cannot be reached right now (a server down, a timeout); a later request may work."""


@dataclass
class Observation:
    """What the robot saw and felt at `stamp`.

    Attributes:
        images: camera name -> (H, W, 3) uint8 RGB.
        state: (D,) float32 in the embodiment layout: joint positions, base velocities.
        instruction: the task in words.
        stamp: [s] when the images were taken (the state is the one nearest that time).
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str
    stamp: float


@dataclass
class ActionChunk:
    """Targets for the near future: `actions[k]` is meant for time `stamp + (k + 1) * dt`.

    Attributes:
        actions: (H, D) in the embodiment layout and its units.
        dt: [s] time between consecutive actions.
        stamp: [s] the time of the observation the chunk was computed from.
    """

    actions: np.ndarray
    dt: float
    stamp: float

    @property
    def times(self) -> np.ndarray:
        """(H,) [s] offsets of the actions from `stamp`."""
        return self.dt * np.arange(1, len(self.actions) + 1)


class Policy(ABC):
    """A backend that turns observations into action chunks.

    `infer` may take long (a model, a network round trip): callers run it off their real-time
    threads. `prefix` (K, D), when given, holds the actions the robot will execute while this
    inference runs (the start of the current chunk, from `observation.stamp` on); backends that
    do real-time chunking make the new chunk agree with it, the others ignore it
    (`supports_prefix` says which).
    """

    supports_prefix = False

    @property
    @abstractmethod
    def metadata(self) -> dict:
        """What the backend expects and returns: see `vla_ros.policy.describe`."""

    @abstractmethod
    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        """The chunk for `observation` (stamped with its time), or PolicyError."""

    def reset(self) -> None:
        """Forget the episode so far (a new instruction, a new episode)."""

    @property
    def state(self) -> str:
        """One line on the backend's health, for diagnostics."""
        return "ready"

    def close(self) -> None:
        """Release connections and threads."""
