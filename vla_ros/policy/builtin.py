"""`builtin`: the built-in VLA (vla_ros.model) from a checkpoint, on the CPU.

`checkpoint` is a checkpoint directory, or the name of one shipped in share/vla_ros/models
(default: `generalist`, one model for arm7, mobile_manipulator and humanoid_upper; `arm7` is the
arm7-only model it was grown from). The embodiment must be one the checkpoint was trained on,
with the same action layout and cameras; anything else is refused at load time, naming what
differs. A checkpoint trained with `--action-space ee_pose` answers in tool poses (an `ee_pose`
chunk, vla_ros.model.ee_actions). With a prefix (the actions that execute while inference runs)
and `guidance` on, the chunk is sampled to agree with it (real-time chunking). With
`read_instructions` on and a checkpoint that lists the instructions of its tasks, each instruction
is read as one of those tasks and the model is given that task's typical training wording
(vla_ros.model.language).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vla_ros import resources
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.goals import goal_frames, goal_in_root
from vla_ros.media import resize
from vla_ros.model.checkpoint import load_checkpoint
from vla_ros.model.config import CheckpointError
from vla_ros.model.ee_actions import EE_POSE, EeCoding
from vla_ros.model.language import InstructionReader, Reading, shared_encoder
from vla_ros.model.normalization import Normalization
from vla_ros.policy.interface import ActionChunk, ActionSpace, Observation, Policy, PolicyError
from vla_ros.policy.registry import backend, describe

DEFAULT_CHECKPOINT = "generalist"


def checkpoint_path(checkpoint: str) -> Path:
    """A checkpoint directory given as a path, or by the name of a shipped one."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        return path
    shipped = resources.share_dir() / "models" / checkpoint
    if shipped.exists():
        return shipped
    available = sorted(p.name for p in (resources.share_dir() / "models").glob("*") if p.is_dir())
    raise PolicyError(f"builtin: no checkpoint {checkpoint!r}: not a directory, and not a shipped model "
                      f"(shipped: {', '.join(available) or 'none'})")


@backend("builtin")
class BuiltinPolicy(Policy):
    """The built-in VLA from a checkpoint, for an embodiment the checkpoint was trained on."""

    supports_prefix = True

    def __init__(self, embodiment: Embodiment, checkpoint: str = DEFAULT_CHECKPOINT, steps: int = 0,
                 guidance: bool = True, seed: int = 0, threads: int = 1, read_instructions: bool = True):
        self.path = checkpoint_path(checkpoint)
        try:
            self.model = load_checkpoint(self.path)
        except CheckpointError as error:
            raise PolicyError(f"builtin: {error}") from None
        config = self.model.config
        self.io = EmbodimentIO(embodiment)
        stats = config.embodiments.get(embodiment.name)
        if stats is None:
            raise PolicyError(f"builtin: checkpoint {self.path} was not trained on {embodiment.name!r} "
                              f"(it knows {', '.join(config.embodiments) or 'no embodiment'}); to add it, record "
                              f"episodes of {embodiment.name} (`vla-ros collect --embodiment {embodiment.name} ...` "
                              f"in the simulator, or recorder_node on the robot) and fine-tune: `vla-ros train "
                              f"--init {self.path} --data <its episodes> <episodes of the bodies it knows> --out "
                              f"<new checkpoint>`")
        if tuple(stats.names) != self.io.names:
            raise PolicyError(f"builtin: checkpoint {self.path} has the layout {stats.names} for {embodiment.name}, "
                              f"the embodiment now has {list(self.io.names)}")
        if list(embodiment.cameras) != stats.cameras:
            raise PolicyError(f"builtin: checkpoint {self.path} expects cameras {stats.cameras}, "
                              f"{embodiment.name} has {list(embodiment.cameras)}")
        self.embodiment = embodiment.name
        self._body = embodiment  # for the goal's forward kinematics in `state`
        self.cameras = stats.cameras
        self.normalization = Normalization(stats, config.width)
        self.coding = EeCoding(embodiment) if stats.action_space == EE_POSE else None
        self.space = ActionSpace(EE_POSE) if self.coding else ActionSpace()
        self.mask = torch.from_numpy(self.normalization.mask.astype(np.float32))
        self.steps = int(steps) or config.architecture.denoising_steps
        self.guidance = bool(guidance)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.goal_frame = stats.goal_frame
        # The last predicted goal [m] as the model gives it and the state it was predicted at: for diagnostics,
        # put in the root frame only when `state` is read, not at every chunk.
        self.goal: tuple[np.ndarray, np.ndarray] | None = None
        torch.set_num_threads(max(1, int(threads)))
        self.encoder = shared_encoder()
        self.encoder.encode(["warm up"])  # load the language model now, not at the first request
        self.reader = InstructionReader(config.instructions, self.encoder) \
            if read_instructions and len(config.instructions) > 1 else None
        self.reading: Reading | None = None  # what the last instruction was read as
        height, width = config.architecture.image_size
        self.image_size = (height, width)
        self._metadata = describe(embodiment, "builtin", config.horizon, config.dt,
                                  cameras={name: (height, width) for name in stats.cameras}, supports_prefix=True,
                                  space=self.space)
        self._metadata.update({"checkpoint": str(self.path), "denoising_steps": self.steps, "guidance": self.guidance,
                               "tasks": self.reader.tasks if self.reader else []})

    @property
    def metadata(self) -> dict:
        return self._metadata

    def guide(self, prefix: np.ndarray, state: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised guide chunk (1, H, width) and per-step weights (H,) for a prefix (K, D)."""
        horizon = self.model.config.horizon
        overlap = self.model.config.architecture.rtc_overlap
        known = min(len(prefix), horizon)
        padded = np.repeat(prefix[-1:], horizon, axis=0)
        padded[:known] = prefix[:known]
        padded = padded[None].astype(np.float32)
        if self.coding is not None:
            padded = self.coding.encode(padded, state[None])
        guide = self.normalization.actions(padded, state[None])
        weights = np.zeros(horizon, np.float32)
        weights[:known] = 1.0
        fade = np.arange(1, overlap + 1) / (overlap + 1)
        weights[known:known + overlap] = (1.0 - fade)[: max(0, horizon - known)]
        return torch.from_numpy(guide), torch.from_numpy(weights)

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        state = np.asarray(observation.state, dtype=np.float32)
        if state.shape != (self.io.size,) or not np.all(np.isfinite(state)):
            raise PolicyError(f"state must be {self.io.size} finite values ({', '.join(self.io.names)}), got "
                              f"{state.shape}")
        images = {}
        for name in self.cameras:
            frame = observation.images.get(name)
            if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                raise PolicyError(f"camera {name!r}: expected an HxWx3 image, got "
                                  f"{None if frame is None else frame.shape}")
            pixels = resize(np.asarray(frame, dtype=np.uint8), *self.image_size)
            images[name] = torch.tensor(pixels).permute(2, 0, 1)[None].float() / 255.0  # copied: frames are read-only
        words = observation.instruction
        if self.reader is not None:
            self.reading = self.reader.read(words)
            words = self.reading.wording
        text = torch.from_numpy(self.encoder.encode([words]))
        with torch.inference_mode():
            context, goal = self.model.prefix(images, text, torch.from_numpy(self.normalization.state(state[None])),
                                              self.embodiment)
            if goal is not None:
                self.goal = self.normalization.goal_metres(goal.numpy()[0]), state
            guide, weights = (None, None)
            if prefix is not None and self.guidance and len(prefix):
                guide, weights = self.guide(np.asarray(prefix, dtype=np.float32), state)
            sampled = self.model.sample(context, self.mask, self.steps, self.generator, guide, weights)
        actions = self.normalization.unnormalize(sampled.numpy(), state[None])[0]
        if self.coding is not None:
            return ActionChunk(self.coding.chunk(actions, state), self.model.config.dt, observation.stamp,
                               self.space)
        return ActionChunk(actions.astype(np.float32), self.model.config.dt, observation.stamp)

    def reset(self) -> None:
        """A new episode: a noise generator of its own (from the seed), no goal or reading yet.

        Reassigned, not changed in place: `fork` relies on it.
        """
        self.generator = torch.Generator().manual_seed(self.seed)
        self.goal = None
        self.reading = None

    @property
    def state(self) -> str:
        """The model, its settings and where it last meant to take the end effector."""
        goal = ""
        if self.goal is not None:
            position, at = self.goal
            where = f"in the root frame ({self.goal_frame})"
            if self.normalization.goal_in_tool and len(goal_frames(self._body)) > 1:
                where = "from the tool that acts"  # which of the arms is the model's to show, not ours
            elif self.normalization.goal_in_tool:
                position = goal_in_root(position, at, self._body, self.io)
            goal = f", goal ({', '.join(f'{v:.3f}' for v in position)}) m {where}"
        read = ""
        if (reading := self.reading) is not None:
            read = (f", read {reading.instruction!r} as {reading.task} (p {reading.probability:.2f}: "
                    f"{reading.wording!r})")
        return (f"{self.path.name}: {self.steps} denoising steps, guidance {'on' if self.guidance else 'off'}"
                f"{read}{goal}")
