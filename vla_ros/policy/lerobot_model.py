"""A LeRobot checkpoint loaded in this process: our observations in its features, its actions in the layout.

Inputs, by feature name: `observation.state` is the state in the embodiment layout; each image
feature (3, H, W) gets the camera `cameras` maps to it (camera -> feature key; by default
`observation.images.<camera>`, or the key `lerobot.cameras` in the embodiment file gives it),
resized to (H, W), as float CHW in [0, 1]; `task` is the instruction. Any other input (an
environment state, depth) is refused. The output `action` is the controller's target: the
layout's joint positions (base velocities for a mobile base), as in the datasets `vla-ros export
lerobot` writes.

The order of the state and action entries: when the checkpoint's names for them are known, from
`state_names` (its names for both, in its order) or else from meta/info.json of the dataset its
train_config.json names (`dataset.root`, else $HF_LEROBOT_HOME/`dataset.repo_id`) when that is on
this machine, each layout slot is found among them by its name (or the name `lerobot.names` in
the embodiment file gives it); without names they must have the layout's size, in its order.
dt is 1 / `fps`, else 1 / that dataset's fps.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.config import lerobot_feature_names
from vla_ros.errors import did_you_mean
from vla_ros.media import resize
from vla_ros.policy.interface import ActionChunk, Observation, Policy, PolicyError
from vla_ros.policy.registry import describe

STATE, ACTION, IMAGES = "observation.state", "action", "observation.images."


@dataclass(frozen=True)
class Wiring:
    """Where an observation goes among a checkpoint's inputs, and where its actions go in the layout.

    Attributes:
        images: camera -> (feature key, height, width) of the image input it fills.
        state_columns: (D,) the index in `observation.state` of each layout slot; None without that input.
        action_columns: (D,) the action column of each layout slot.
    """

    images: dict[str, tuple[str, int, int]]
    state_columns: np.ndarray | None
    action_columns: np.ndarray


def dataset_info(path: Path, home: Path) -> dict:
    """meta/info.json of the dataset the checkpoint's train_config.json names; {} when it is not on this machine."""
    try:
        dataset = json.loads((path / "train_config.json").read_text()).get("dataset") or {}
        root = Path(dataset.get("root") or Path(home) / str(dataset.get("repo_id"))).expanduser()
        return json.loads((root / "meta" / "info.json").read_text())
    except (OSError, ValueError, AttributeError):
        return {}


def wire(embodiment: Embodiment, path: Path, config, cameras: dict[str, str] | None, state_names: list[str] | None,
         info: dict) -> Wiring:
    """How `embodiment` fills a LeRobot policy `config`'s inputs; PolicyError naming every feature that does not fit."""
    io = EmbodimentIO(embodiment)
    wanted = embodiment.config.lerobot.dataset_names(io.names)
    problems: list[str] = []

    def columns(key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if tuple(shape) != (io.size,):
            problems.append(f"{key} has shape {tuple(shape)}; the {embodiment.name} layout has {io.size} values")
            return None
        names = state_names if state_names is not None else lerobot_feature_names(info, key)
        if names is None:
            return np.arange(io.size)
        absent = [name for name in wanted if name not in names]
        if absent or len(names) != io.size:
            shown = names if len(names) <= 8 else [*names[:8], "..."]
            problems.append(f"{key} is named {shown}, without {absent}: pass state_names (the checkpoint's names in "
                            f"its order) or map the layout's names under lerobot.names in the embodiment file")
            return None
        return np.array([names.index(name) for name in wanted])

    if cameras is None:
        cameras = {name: embodiment.config.lerobot.cameras.get(name, IMAGES + name) for name in embodiment.cameras}
    else:
        image_keys = [key for key, feature in config.input_features.items() if feature.type.value == "VISUAL"]
        for camera, key in cameras.items():
            if camera not in embodiment.cameras:
                problems.append(f"cameras names {camera!r}, which {embodiment.name} does not have "
                                f"({', '.join(embodiment.cameras) or 'no cameras'})")
            elif key not in image_keys:
                problems.append(f"cameras maps {camera!r} to {key!r}, no image input of the checkpoint"
                                f"{did_you_mean(key, image_keys)} (it has {', '.join(image_keys) or 'none'})")
    camera_of = {key: camera for camera, key in cameras.items() if camera in embodiment.cameras}
    images, state_columns = {}, None
    for key, feature in config.input_features.items():
        kind, shape = feature.type.value, tuple(feature.shape)
        if kind == "VISUAL" and key not in camera_of:
            problems.append(f"image {key} has no camera (map one with cameras={{CAMERA: {key}}}; {embodiment.name} "
                            f"has {', '.join(embodiment.cameras) or 'none'})")
        elif kind == "VISUAL" and (len(shape) != 3 or shape[0] != 3):
            problems.append(f"image {key} has shape {shape}, not RGB (3, H, W)")
        elif kind == "VISUAL":
            images[camera_of[key]] = (key, shape[1], shape[2])
        elif kind == "STATE" and key == STATE:
            state_columns = columns(key, shape)
        else:
            problems.append(f"{key} ({kind}) is nothing vla_ros observes (it gives {STATE} and images)")
    action = config.output_features.get(ACTION)
    if action is None:
        problems.append(f"no {ACTION} output (outputs: {', '.join(config.output_features) or 'none'})")
    action_columns = columns(ACTION, tuple(action.shape)) if action is not None else None
    if problems:
        raise PolicyError(f"lerobot: {embodiment.name} does not fit the {config.type} checkpoint {path}: "
                          f"{'; '.join(problems)}")
    return Wiring(images, state_columns, action_columns)


class LeRobotModel(Policy):
    """A LeRobot checkpoint in this process (see the module docstring); LeRobot must import here."""

    def __init__(self, embodiment: Embodiment, path: Path, policy_type: str, cameras: dict[str, str] | None,
                 state_names: list[str] | None, fps: float, device: str, threads: int):
        from draccus.utils import DraccusException
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.constants import HF_LEROBOT_HOME

        known = sorted(PreTrainedConfig.get_known_choices())
        if policy_type not in known:
            raise PolicyError(f"lerobot: {path} holds a {policy_type!r} policy, which this LeRobot does not know"
                              f"{did_you_mean(policy_type, known)}; it knows {', '.join(known)}")
        try:
            config = PreTrainedConfig.from_pretrained(path)
        except (DraccusException, ValueError) as error:
            raise PolicyError(f"lerobot: {path / 'config.json'} is no valid {policy_type} config: {error}") from None
        config.device = device
        info = dataset_info(path, HF_LEROBOT_HOME)
        self.wiring = wire(embodiment, path, config, cameras, state_names, info)
        fps = fps or float(info.get("fps") or 0.0)
        if not fps > 0:
            raise PolicyError(f"lerobot: {path} does not say its control rate (no train_config.json naming a dataset "
                              f"whose meta/info.json is on this machine): pass fps=<the training dataset's fps>")
        self.io = EmbodimentIO(embodiment)
        self.path, self.policy_type, self.dt = path, policy_type, 1.0 / fps
        torch.set_num_threads(threads)
        self.policy = get_policy_class(policy_type).from_pretrained(path, config=config)
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": device}})
        chunk_length = len(config.action_delta_indices or [None])
        self._metadata = describe(embodiment, "lerobot", chunk_length, self.dt,
                                  cameras={camera: (h, w) for camera, (_, h, w) in self.wiring.images.items()})
        self._metadata.update({"checkpoint": str(path), "policy_type": policy_type})

    @property
    def metadata(self) -> dict:
        return self._metadata

    def _inputs(self, observation: Observation) -> dict:
        """The checkpoint's raw inputs for `observation`: batches of one, before its preprocessor."""
        state = np.asarray(observation.state, dtype=np.float32)
        if state.shape != (self.io.size,) or not np.all(np.isfinite(state)):
            raise PolicyError(f"state must be {self.io.size} finite values ({', '.join(self.io.names)}), got "
                              f"{state.shape}")
        batch = {"task": observation.instruction}
        if self.wiring.state_columns is not None:
            ordered = np.empty_like(state)
            ordered[self.wiring.state_columns] = state
            batch[STATE] = torch.from_numpy(ordered)[None]
        for camera, (key, height, width) in self.wiring.images.items():
            frame = observation.images.get(camera)
            if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                raise PolicyError(f"camera {camera!r}: expected an HxWx3 image, got "
                                  f"{None if frame is None else frame.shape}")
            pixels = np.ascontiguousarray(resize(np.asarray(frame, dtype=np.uint8), height, width))
            batch[key] = torch.tensor(pixels).permute(2, 0, 1)[None].float() / 255.0  # copied: frames are read-only
        return batch

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        batch = self._inputs(observation)
        width = len(self.wiring.action_columns)
        with torch.inference_mode():
            chunk = self.policy.predict_action_chunk(self.preprocessor(batch))
            if chunk.ndim != 3 or chunk.shape[0] != 1 or chunk.shape[2] != width:
                raise PolicyError(f"the {self.policy_type} policy answered {tuple(chunk.shape)}, not (1, H, {width})")
            # The postprocessor takes (B, D) actions: the chunk's steps go through it as a batch.
            actions = self.postprocessor(chunk[0]).float().cpu().numpy()
        return ActionChunk(actions[:, self.wiring.action_columns].astype(np.float32), self.dt, observation.stamp)

    def reset(self) -> None:
        self.policy.reset()

    def fork(self) -> LeRobotModel:
        """The same model: `infer` (predict_action_chunk) keeps nothing between requests, so nothing to reset."""
        return copy.copy(self)

    @property
    def state(self) -> str:
        return f"LeRobot {self.policy_type} from {self.path}"
