"""Backends by name: `make_policy("remote", embodiment, {"url": "ws://gpu-box:8000"})`.

A backend is a Policy subclass registered with `@backend("name")`; its constructor takes the
embodiment and keyword parameters, which `make_policy` checks against the signature (unknown or
missing parameters are errors that list what the backend takes).
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping

import yaml

from vla_ros.embodiment import Embodiment
from vla_ros.errors import did_you_mean
from vla_ros.policy.interface import ActionSpace, Policy, PolicyError

# name -> module that registers it (imported on first use, so `remote` costs nothing to `hold` users)
MODULES = {
    "hold": "vla_ros.policy.hold",
    "replay": "vla_ros.policy.replay",
    "remote": "vla_ros.policy.remote",
    "builtin": "vla_ros.policy.builtin",
    "lerobot": "vla_ros.policy.lerobot",
}
_BACKENDS: dict[str, type[Policy]] = {}


def backend(name: str):
    """Class decorator: register a Policy subclass under `name`."""
    def register(cls: type[Policy]) -> type[Policy]:
        _BACKENDS[name] = cls
        cls.backend_name = name
        return cls
    return register


def backend_class(name: str) -> type[Policy]:
    if name not in MODULES:
        raise PolicyError(f"no policy backend {name!r}{did_you_mean(name, MODULES)}; backends: {', '.join(MODULES)}")
    importlib.import_module(MODULES[name])
    return _BACKENDS[name]


def parameters(name: str) -> dict[str, object]:
    """The parameters backend `name` takes, with their defaults (inspect.Parameter.empty if required)."""
    signature = inspect.signature(backend_class(name).__init__)
    return {p.name: p.default for p in list(signature.parameters.values())[2:]}


def make_policy(name: str, embodiment: Embodiment, params: Mapping[str, object] | None = None) -> Policy:
    """The backend `name` for `embodiment`, built with `params`; PolicyError says what is wrong."""
    cls = backend_class(name)
    params = dict(params or {})
    accepted = parameters(name)
    for key in params:
        if key not in accepted:
            raise PolicyError(f"policy backend {name!r} has no parameter {key!r}{did_you_mean(key, accepted)}; "
                              f"it takes: {', '.join(accepted) or 'none'}")
    missing = [key for key, default in accepted.items() if default is inspect.Parameter.empty and key not in params]
    if missing:
        raise PolicyError(f"policy backend {name!r} needs the parameter(s) {', '.join(missing)}")
    try:
        return cls(embodiment, **params)
    except (TypeError, ValueError) as error:
        raise PolicyError(f"policy backend {name!r}: bad parameters {params}: {error}") from None


def describe(embodiment: Embodiment, backend_name: str, chunk_length: int, dt: float,
             cameras: Mapping[str, tuple[int, int]] | None = None, supports_prefix: bool = False,
             space: ActionSpace | None = None) -> dict:
    """The metadata a backend reports (and `vla-ros serve` sends on connect).

    Keys: backend, embodiment, cameras {name: [H, W, 3]} (the resolution the backend wants;
    the embodiment's own by default), state_names and action_names (the embodiment layout),
    action_width and action_mask (the padded vector), chunk_length, dt [s], supports_prefix, and
    action_space (`ActionSpace.to_dict`: what the chunks' columns are; joint positions by default).
    """
    if cameras is None:
        cameras = {name: (c.height, c.width) for name, c in embodiment.cameras.items()}
    layout = embodiment.layout
    return {
        "backend": backend_name,
        "embodiment": embodiment.name,
        "cameras": {name: [int(h), int(w), 3] for name, (h, w) in cameras.items()},
        "state_names": list(layout.names),
        "action_names": list(layout.names),
        "action_width": layout.width,
        "action_mask": layout.mask.tolist(),
        "chunk_length": int(chunk_length),
        "dt": float(dt),
        "supports_prefix": supports_prefix,
        "action_space": (space or ActionSpace()).to_dict(),
    }


def parse_params(text: str = "", pairs: list[str] | tuple[str, ...] = ()) -> dict[str, object]:
    """Backend parameters from a YAML mapping and KEY=VALUE pairs; pairs win.

    The mapping as `{url: "ws://host:8000", timeout_s: 1.0}`; pair values read as YAML:
    `loop=false`, `dt=0.05`.
    """
    try:
        params = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise PolicyError(f"policy parameters {text!r} are not YAML: {error}") from None
    if not isinstance(params, dict):
        raise PolicyError(f"policy parameters must be a YAML mapping like '{{url: ws://host:8000}}', got {text!r}")
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise PolicyError(f"policy parameter {pair!r} is not KEY=VALUE")
        params[key] = yaml.safe_load(value) if value else ""
    return params
