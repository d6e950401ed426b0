"""What a checkpoint is: the architecture, the chunk, and per-embodiment layouts and statistics (JSON)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vla_ros.errors import VlaRosError

STD_FLOOR = 1e-3  # a slot that never moves in the data keeps unit-ish scale instead of exploding


class CheckpointError(VlaRosError):
    """A checkpoint that cannot be read, or does not fit what it is asked to drive."""


@dataclass
class Architecture:
    """Sizes of the network (vla_ros.model.network.VLA)."""

    image_size: tuple[int, int] = (96, 96)  # (H, W) every camera is resized to
    channels: tuple[int, ...] = (16, 32, 64, 128)  # image encoder stages (stride 2 each)
    d_model: int = 128
    heads: int = 4
    trunk_layers: int = 3
    expert_layers: int = 3
    text_dim: int = 384  # all-MiniLM-L6-v2 sentence embedding
    keypoints: int = 16  # spatial-softmax points per camera, read by the goal head
    denoising_steps: int = 10
    rtc_overlap: int = 5  # steps after the prefix over which guidance fades out


def relative_offsets(actions: np.ndarray, states: np.ndarray, relative) -> np.ndarray:
    """(N, H, A) actions less their states (N, D) on the `relative` (A,) slots (which index both alike)."""
    offsets = np.array(actions, dtype=np.float32)
    slots = np.flatnonzero(relative)
    offsets[..., slots] -= np.asarray(states, dtype=np.float32)[:, None, slots]
    return offsets


@dataclass
class EmbodimentStats:
    """One embodiment as the model sees it: its slots in the padded vector and data statistics.

    Actions are learned as offsets from the current state on joint slots (absolute on base
    velocity slots), normalised per slot: (offset - mean) / std. With `action_space` ee_pose they
    are the end-effector columns of vla_ros.model.ee_actions instead (`action_names`, in the
    `action_mask` slots; already relative to the state, so no slot is `relative`). Goals (the end effector's position
    at the next keypose of an episode, vla_ros.embodiment.goals.hindsight_goals) are normalised the same way;
    an embodiment without a goal frame has none. A goal is in the root frame, or with `goal_in_tool`
    in the goal frame where the state puts it (what the wrist camera sees; 0 where the gripper acts).
    """

    names: list[str]  # the embodiment layout (slot names in order)
    mask: list[bool]  # (width,) used slots
    cameras: list[str]
    relative: list[bool]  # (D,) True: action = state + offset (joints); False: absolute (base velocities)
    state_mean: list[float]
    state_std: list[float]
    action_mean: list[float]
    action_std: list[float]
    goal_frame: str | None = None
    goal_mean: list[float] | None = None  # [m]
    goal_std: list[float] | None = None
    goal_in_tool: bool = False
    action_space: str = "joint_position"  # or "ee_pose" (vla_ros.model.ee_actions)
    action_names: list[str] | None = None  # the action columns when they are not the layout's `names`
    action_mask: list[bool] | None = None  # (width,) their slots, when not `mask`

    @classmethod
    def from_data(cls, names, mask, cameras, relative, states: np.ndarray, actions: np.ndarray,
                  goal_frame: str | None = None, goals: np.ndarray | None = None,
                  goal_in_tool: bool = False, **action_columns) -> EmbodimentStats:
        """Statistics of states (N, D), actions (N, H, A) and goals (N, 3) [m].

        Actions are in the embodiment layout (A = D), or the columns `action_columns` name
        (action_space, action_names, action_mask).
        """
        offsets = relative_offsets(actions, states, relative)
        flat = offsets.reshape(-1, offsets.shape[-1])
        goal = {}
        if goal_frame is not None and goals is not None:
            goal = dict(goal_frame=goal_frame, goal_mean=goals.mean(0).tolist(),
                        goal_std=np.maximum(goals.std(0), STD_FLOOR).tolist(), goal_in_tool=goal_in_tool)
        return cls(list(names), [bool(m) for m in mask], list(cameras), [bool(r) for r in relative],
                   states.mean(0).tolist(), np.maximum(states.std(0), STD_FLOOR).tolist(),
                   flat.mean(0).tolist(), np.maximum(flat.std(0), STD_FLOOR).tolist(), **goal, **action_columns)

    @property
    def has_goal(self) -> bool:
        return self.goal_frame is not None


@dataclass
class ModelConfig:
    """Everything needed to rebuild and use a trained model (config.json of a checkpoint)."""

    architecture: Architecture = field(default_factory=Architecture)
    width: int = 32  # the padded action vector
    horizon: int = 16  # actions per chunk
    dt: float = 0.05  # [s] between actions
    cameras: list[str] = field(default_factory=list)  # every camera name the model has an embedding for
    embodiments: dict[str, EmbodimentStats] = field(default_factory=dict)
    # task -> the instructions its training episodes were given, for the reader (vla_ros.model.language)
    instructions: dict[str, list[str]] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # data summary, steps, losses: for people, not for loading

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def action_space(self) -> str:
        """What the model's actions are (vla_ros.model.ee_actions): one space for all its bodies."""
        spaces = {stats.action_space for stats in self.embodiments.values()}
        if len(spaces) > 1:
            raise CheckpointError(f"a checkpoint's bodies have one action space, these have {sorted(spaces)}")
        return spaces.pop() if spaces else "joint_position"

    @classmethod
    def from_json(cls, data: dict) -> ModelConfig:
        try:
            architecture = dict(data["architecture"])
            architecture["image_size"] = tuple(architecture["image_size"])
            architecture["channels"] = tuple(architecture["channels"])
            return cls(
                architecture=Architecture(**architecture), width=int(data["width"]), horizon=int(data["horizon"]),
                dt=float(data["dt"]), cameras=list(data["cameras"]),
                embodiments={name: EmbodimentStats(**stats) for name, stats in data["embodiments"].items()},
                instructions={task: [str(t) for t in texts] for task, texts in data.get("instructions", {}).items()},
                training=dict(data.get("training", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"config.json does not describe a vla_ros model: {error!r}") from None
