"""What every policy backend speaks: observations in, action chunks out (docs/architecture.md).

States are in the embodiment layout: the used slots of the embodiment's action vector, in order
(`embodiment.layout.names`): joint positions [rad | m] for joint groups, base velocities
(vx [m/s], vy [m/s], wz [rad/s]) for a mobile base. Chunks are too in the default action space
(`joint_position`); a chunk in another `action_space` (`ActionSpace`: joint deltas or velocities, tool
deltas or poses) says so, and vla_ros.policy.spaces turns it into that layout. The padded width
and the mask are the model's business (`ActionLayout.pad` / `unpad`); nothing outside a model
sees padding.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from vla_ros.errors import VlaRosError, did_you_mean

SPACES = ("joint_position", "joint_delta", "joint_velocity", "ee_delta", "ee_pose")
EE_SPACES = ("ee_delta", "ee_pose")
FRAMES = ("base", "tool")


class PolicyError(VlaRosError):
    """A policy that cannot answer this request: a bad observation, a backend's own error."""


class BackendUnavailable(PolicyError):
    """The backend cannot be reached right now (a server down, a timeout); a later request may work."""


class ActionSpaceError(PolicyError):
    """An action space that does not exist, does not fit the embodiment, or a chunk that fits no space."""


@dataclass(frozen=True)
class GripperMap:
    """The model's gripper value -> the gripper joint's range.

    Attributes:
        open: the model's value for a fully open gripper (DROID 0, LIBERO -1).
        closed: its value for a fully closed one (DROID 1, LIBERO +1).
        threshold: when set, a fraction of the way from open to closed past which the gripper
            closes fully (below it, opens fully): for models trained on binary grippers.
    """

    open: float = 0.0
    closed: float = 1.0
    threshold: float | None = None

    def __post_init__(self):
        if self.open == self.closed:
            raise ActionSpaceError(f"gripper open and closed values are both {self.open}: give two different values")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ActionSpaceError(f"gripper threshold {self.threshold} is not a fraction in (0, 1)")

    def closure(self, values: np.ndarray) -> np.ndarray:
        """Fraction closed, 0 (open) .. 1 (closed), of the model's values."""
        fraction = np.clip((np.asarray(values, dtype=float) - self.open) / (self.closed - self.open), 0.0, 1.0)
        return fraction if self.threshold is None else (fraction > self.threshold).astype(float)


@dataclass(frozen=True)
class ActionSpace:
    """What a chunk's columns are (see the module docstring)."""

    name: str = "joint_position"
    columns: tuple[str, ...] = ()
    frame: str = "base"
    gripper: GripperMap | None = None
    velocity_scale: float = 1.0
    translation_scale: float = 1.0
    rotation_scale: float = 1.0

    def __post_init__(self):
        if self.name not in SPACES:
            raise ActionSpaceError(f"no action space {self.name!r}{did_you_mean(self.name, SPACES)}; "
                                   f"spaces: {', '.join(SPACES)}")
        if self.frame not in FRAMES:
            raise ActionSpaceError(f"no end-effector frame {self.frame!r}; frames: {', '.join(FRAMES)}")
        for scale in ("velocity_scale", "translation_scale", "rotation_scale"):
            if not getattr(self, scale) > 0:
                raise ActionSpaceError(f"{scale} {getattr(self, scale)} is not positive")

    def to_dict(self) -> dict:
        """Plain data (metadata on the wire); `from_dict` reads it back."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data

    @classmethod
    def from_dict(cls, data: dict | str) -> ActionSpace:
        """From a space's name or a mapping of its fields (unknown fields are errors)."""
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise ActionSpaceError(f"an action space is a name or a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ActionSpaceError(f"action space has no field {unknown[0]!r}{did_you_mean(unknown[0], known)}")
        values = dict(data)
        values["columns"] = tuple(values.get("columns") or ())
        gripper = values.get("gripper")
        values["gripper"] = GripperMap(**gripper) if isinstance(gripper, dict) else gripper
        return cls(**values)


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
        actions: (H, D): columns as `space` says (by default joint positions in the embodiment
            layout and its units).
        dt: [s] time between consecutive actions.
        stamp: [s] the time of the observation the chunk was computed from.
        action_space: what the columns are; `vla_ros.policy.spaces.ChunkAdapter` turns any space
            into the joint positions the controller tracks.
    """

    actions: np.ndarray
    dt: float
    stamp: float
    action_space: ActionSpace = field(default_factory=ActionSpace)

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

    def fork(self) -> Policy:
        """A policy with an episode of its own that shares this one's loaded model (a server's per client).

        The default, a shallow copy reset, suits a backend whose `reset` reassigns all its episode
        state; one that keeps mutable state otherwise, or a connection, overrides it. Forks infer one
        at a time (the server takes care of it); closing a fork leaves the model to this policy.
        """
        twin = copy.copy(self)
        twin.reset()
        return twin

    @property
    def state(self) -> str:
        """One line on the backend's health, for diagnostics."""
        return "ready"

    def close(self) -> None:
        """Release connections and threads."""
