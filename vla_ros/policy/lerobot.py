"""`lerobot`: a policy trained with LeRobot (any type it ships: ACT, diffusion, pi0, SmolVLA, ...).

`checkpoint` is a LeRobot `pretrained_model` directory: config.json naming the policy "type",
model.safetensors, and policy_preprocessor.json / policy_postprocessor.json with their state
files. LeRobot's own API loads it and runs each request: the preprocessor, `predict_action_chunk`
(the whole chunk) and the postprocessor (vla_ros.policy.lerobot_model says how observations and
actions map onto the checkpoint's features, and where dt comes from).

LeRobot pins a torch of its own, so it lives in its own environment (`make lerobot-setup` makes
.venv-lerobot). Where LeRobot imports, the checkpoint is loaded in this process. Where it does
not (the main venv, where policy_node and `vla-ros eval` run), `python` (default
$VLA_ROS_LEROBOT_PYTHON) names the interpreter of an environment that has it: the backend runs
`vla-ros serve --backend lerobot` there and drives it over loopback (vla_ros.policy.spawned), so
`vla-ros eval --policy lerobot --policy-param checkpoint=DIR --policy-param
python=.venv-lerobot/bin/python` works from the main venv.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

from vla_ros.embodiment import Embodiment
from vla_ros.policy.interface import ActionChunk, Observation, Policy, PolicyError
from vla_ros.policy.registry import backend
from vla_ros.policy.spawned import SpawnedPolicy

PYTHON_VARIABLE = "VLA_ROS_LEROBOT_PYTHON"
CHECKPOINT_FILES = ("model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json")
WHAT_TO_GIVE = "give the pretrained_model directory LeRobot saves (outputs/train/RUN/checkpoints/last/pretrained_model)"


def read_checkpoint(checkpoint: str) -> tuple[Path, str]:
    """The checkpoint's directory and policy type, checked without LeRobot; PolicyError if it is not one."""
    path = Path(checkpoint).expanduser().resolve()
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        what = "no config.json in it" if path.is_dir() else "no such directory"
        raise PolicyError(f"lerobot: {checkpoint} is not a LeRobot checkpoint ({what}): {WHAT_TO_GIVE}") from None
    except OSError as error:
        raise PolicyError(f"lerobot: cannot read {path / 'config.json'} ({error.strerror})") from None
    except ValueError as error:
        raise PolicyError(f"lerobot: {path / 'config.json'} is not JSON ({error}): {WHAT_TO_GIVE}") from None
    policy_type = config.get("type") if isinstance(config, dict) else None
    if not isinstance(policy_type, str) or not policy_type:
        raise PolicyError(f"lerobot: {path / 'config.json'} names no policy \"type\", so {checkpoint} is not a "
                          f"LeRobot checkpoint: {WHAT_TO_GIVE}")
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if missing == ["policy_preprocessor.json", "policy_postprocessor.json"]:
        raise PolicyError(f"lerobot: {checkpoint} has no policy_preprocessor.json: saved by a LeRobot before 0.4, "
                          f"convert it with `python -m lerobot.processor.migrate_policy_normalization "
                          f"--pretrained-path {path}`")
    if missing:
        raise PolicyError(f"lerobot: {checkpoint} is not a complete LeRobot checkpoint (no {', '.join(missing)}): "
                          f"{WHAT_TO_GIVE}")
    return path, policy_type


@backend("lerobot")
class LeRobotPolicy(Policy):
    """A LeRobot checkpoint: in this process where LeRobot imports, else served from `python`."""

    def __init__(self, embodiment: Embodiment, checkpoint: str, cameras: dict | None = None,
                 state_names: list | None = None, fps: float = 0.0, device: str = "cpu", threads: int = 1,
                 python: str = ""):
        if cameras is not None and not (isinstance(cameras, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in cameras.items())):
            raise ValueError(f"cameras must map camera names to feature keys, got {cameras!r}")
        if state_names is not None and not (isinstance(state_names, list) and all(
                isinstance(n, str) for n in state_names)):
            raise ValueError(f"state_names must be a list of names, got {state_names!r}")
        if fps < 0 or threads < 1:
            raise ValueError("fps must be >= 0 (0: the dataset's) and threads >= 1")
        path, policy_type = read_checkpoint(checkpoint)
        if importlib.util.find_spec("lerobot") is not None:
            from vla_ros.policy.lerobot_model import LeRobotModel

            self.runner: Policy = LeRobotModel(embodiment, path, policy_type, cameras, state_names, float(fps),
                                               device, int(threads))
            return
        python = python or os.environ.get(PYTHON_VARIABLE, "")
        if not python:
            raise PolicyError(f"lerobot: LeRobot is not installed in {sys.executable}: run `make lerobot-setup`, then "
                              f"pass python=.venv-lerobot/bin/python (or set {PYTHON_VARIABLE}), or run `vla-ros serve "
                              f"--backend lerobot` in a LeRobot environment and use the `remote` backend")
        given = {"checkpoint": str(path), "cameras": cameras, "state_names": state_names, "fps": fps,
                 "device": device, "threads": threads}
        # The child must load in-process or fail: were LeRobot missing there too, it must not spawn in turn.
        self.runner = SpawnedPolicy(python, "lerobot", embodiment, {k: v for k, v in given.items() if v is not None},
                                    env={PYTHON_VARIABLE: ""})

    @property
    def metadata(self) -> dict:
        return self.runner.metadata

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        return self.runner.infer(observation, prefix)

    def reset(self) -> None:
        self.runner.reset()

    def fork(self) -> LeRobotPolicy:
        twin = copy.copy(self)
        twin.runner = self.runner.fork()
        return twin

    @property
    def state(self) -> str:
        return self.runner.state

    def close(self) -> None:
        self.runner.close()
