"""Observations as they arrive from outside (a websocket request), checked and brought to size."""
from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from vla_ros.media import resize
from vla_ros.policy.interface import Observation, PolicyError

MAX_PROMPT_CHARS = 2000  # a task in words; longer is refused (policy_node's instructions too)


def parse_observation(request: object, metadata: Mapping) -> tuple[Observation, np.ndarray | None]:
    """The Observation (and prefix) in a request, or PolicyError naming what is wrong.

    A request is {"images": {camera: HxWx3 uint8}, "state": (D,), "prompt": str, optional "stamp"
    [s] and "prefix" (K, D)}.

    Images of another resolution are resized to the metadata's; anything else that does not match
    the metadata (a missing camera, a wrong dtype or channel count, a state of the wrong length,
    non-finite numbers, a prompt over MAX_PROMPT_CHARS) is an error.
    """
    if not isinstance(request, Mapping):
        raise PolicyError(f"an observation is a map, got {type(request).__name__}")
    names = metadata["state_names"]
    unknown = sorted(map(repr, set(request) - {"images", "state", "prompt", "stamp", "prefix"}))
    if unknown:
        raise PolicyError(f"unknown observation keys {unknown}; expected images, state, prompt "
                          "(stamp, prefix optional)")
    images = request.get("images")
    if not isinstance(images, Mapping):
        raise PolicyError(f"'images' must map camera names {list(metadata['cameras'])} to HxWx3 uint8 arrays")
    frames = {}
    for camera, (height, width, _) in metadata["cameras"].items():
        image = images.get(camera)
        if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
                or not image.size):  # an empty image cannot be resized
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise PolicyError(f"images[{camera!r}] must be an HxWx3 uint8 array ({height}x{width} preferred), "
                              f"got {got}")
        frames[camera] = resize(image, height, width)
    state = _vector(request.get("state"), "state", (len(names),))
    prompt = request.get("prompt", "")
    if not isinstance(prompt, str):
        raise PolicyError(f"'prompt' must be a string, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PolicyError(f"'prompt' has {len(prompt)} characters (at most {MAX_PROMPT_CHARS})")
    stamp = request.get("stamp", time.time())
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, np.integer,
                                                         np.floating)) or not np.isfinite(stamp):
        raise PolicyError(f"'stamp' must be a finite number of seconds, got {stamp!r}")
    prefix = request.get("prefix")
    if prefix is not None:
        prefix = _vector(prefix, "prefix", (None, len(names)))
    return Observation(frames, state, prompt, float(stamp)), prefix


def _vector(value: object, key: str, shape: tuple) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise PolicyError(f"{key!r} must be numbers, got {type(value).__name__}") from None
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise PolicyError(f"{key!r} has shape {array.shape}, expected {tuple('K' if s is None else s for s in shape)}")
    if not np.all(np.isfinite(array)):
        raise PolicyError(f"{key!r} holds NaN or Inf")
    return array
