"""Checkpoints: a directory with model.safetensors (weights) and config.json (vla_ros.model.config).

`vla-ros train` also writes optimizer.safetensors + train_state.json there, which only resuming
needs (a shipped checkpoint leaves them out), and loss.png.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vla_ros.model.config import CheckpointError, ModelConfig
from vla_ros.model.network import VLA

WEIGHTS, CONFIG = "model.safetensors", "config.json"
OPTIMIZER, TRAIN_STATE = "optimizer.safetensors", "train_state.json"


def save_checkpoint(path: Path, model: VLA, optimizer: torch.optim.Optimizer | None = None,
                    train_state: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS))
    (path / CONFIG).write_text(json.dumps(model.config.to_json(), indent=1))
    if optimizer is not None:
        tensors, steps = {}, {}
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                state = optimizer.state.get(parameter, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        tensors[f"{names[id(parameter)]}/{key}"] = state[key].contiguous()
                if "step" in state:
                    steps[names[id(parameter)]] = float(state["step"])
        save_file(tensors, str(path / OPTIMIZER))
        (path / TRAIN_STATE).write_text(json.dumps({**(train_state or {}), "optimizer_steps": steps}, indent=1))


def read_config(path: Path) -> ModelConfig:
    path = Path(path)
    if not (path / CONFIG).exists() or not (path / WEIGHTS).exists():
        raise CheckpointError(f"{path} is not a checkpoint: it needs {CONFIG} and {WEIGHTS}")
    try:
        return ModelConfig.from_json(json.loads((path / CONFIG).read_text()))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path / CONFIG} is not JSON: {error}") from None


def load_checkpoint(path: Path) -> VLA:
    """The model of a checkpoint, in eval mode; CheckpointError names every tensor that does not fit."""
    path = Path(path)
    config = read_config(path)
    model = VLA(config)
    try:
        weights = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path / WEIGHTS}: cannot read the weights: {error}") from None
    expected = model.state_dict()
    problems = [f"{name}: missing" for name in expected if name not in weights]
    problems += [f"{name}: not part of this architecture" for name in weights if name not in expected]
    problems += [f"{name}: shape {tuple(weights[name].shape)} in the file, {tuple(tensor.shape)} for the "
                 "architecture in config.json" for name, tensor in expected.items()
                 if name in weights and weights[name].shape != tensor.shape]
    if problems:
        shown = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(f"{path}: the weights do not match config.json:\n  {shown}")
    model.load_state_dict(weights)
    model.eval()
    return model


def load_optimizer(path: Path, model: VLA, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the optimizer state saved with a checkpoint; returns its train_state."""
    if not (path / OPTIMIZER).exists() or not (path / TRAIN_STATE).exists():
        raise CheckpointError(f"{path} has no {OPTIMIZER} / {TRAIN_STATE}: it cannot be resumed "
                              "(only checkpoints written by `vla-ros train` can)")
    tensors = load_file(str(path / OPTIMIZER))
    train_state = json.loads((path / TRAIN_STATE).read_text())
    steps = train_state.pop("optimizer_steps", {})
    for name, parameter in model.named_parameters():
        if f"{name}/exp_avg" in tensors:
            optimizer.state[parameter] = {"step": torch.tensor(steps.get(name, 0.0)),
                                          "exp_avg": tensors[f"{name}/exp_avg"],
                                          "exp_avg_sq": tensors[f"{name}/exp_avg_sq"]}
    return train_state
