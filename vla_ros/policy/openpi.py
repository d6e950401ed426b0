"""Requests in another server's form, and openpi's example clients as presets for `remote`.

A `RequestFormat` says where each part of an observation goes: images under `images_key` (or at
the top level), each camera under its key, optionally letterboxed to a size (openpi's
`resize_with_pad`) and channel-first; the state as the whole embodiment-layout vector or split
over several keys, each a list of tokens:

- a group or joint name: those joints' positions [rad | m];
- `GROUP:closure`: a gripper's fraction closed mapped onto the model's open..closed values;
- `GROUP:fingers`: a gripper's joints followed by the joints that mimic them;
- `ARM:ee_pose`: the arm's tool position [m] and axis-angle orientation [rad] in the root frame.

The presets (`droid`, `libero`, `aloha`) build the requests openpi's example clients build
(examples/droid, examples/libero, examples/aloha_real in the openpi repository) and say how to
read the answers: action space, dt, gripper convention, how many steps to keep, clipping.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import pinocchio as pin

from vla_ros.embodiment import Embodiment, EmbodimentIO, JointGroup
from vla_ros.errors import did_you_mean
from vla_ros.policy.interface import ActionSpace, ActionSpaceError, GripperMap, Observation, PolicyError


@dataclass(frozen=True)
class RequestFormat:
    """Where an observation's parts go in a request (see the module docstring)."""

    images_key: str = "images"
    image_keys: dict[str, str] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    channels_first: bool = False
    state_keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"state": ()})
    prompt_key: str = "prompt"
    state_dtype: str = "float32"


@dataclass(frozen=True)
class Preset:
    """What an openpi example client sends and how it reads the answer, for one embodiment."""

    request: RequestFormat
    space: ActionSpace
    dt: float
    steps: int  # actions of each chunk the client executes before asking again
    clip: float  # |action| clipped to this (0: not clipped)


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` scaled to fit (height, width) with its aspect kept, centred on black (openpi's resize_with_pad)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    ratio = max(w / width, h / height)
    new_w, new_h = int(w / ratio), int(h / ratio)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def closure(group: JointGroup, positions: np.ndarray) -> np.ndarray:
    """Fraction closed (0 open .. 1 closed) of a gripper's or hand's joint positions."""
    opened, closed = group.grip_range()
    return np.clip((positions - opened) / (closed - opened), 0.0, 1.0)


class StateReader:
    """Request state values from an observation's state vector, by tokens (see the module docstring)."""

    def __init__(self, embodiment: Embodiment, gripper: GripperMap | None):
        self.embodiment = embodiment
        self.io = EmbodimentIO(embodiment)
        self.slot = {name: i for i, name in enumerate(self.io.names)}
        self.gripper = gripper or GripperMap()
        self._readers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    def read(self, tokens: tuple[str, ...], state: np.ndarray) -> np.ndarray:
        """The values `tokens` name, in order (the whole state vector for no tokens)."""
        state = np.asarray(state, dtype=np.float64)
        return np.concatenate([self.reader(token)(state) for token in tokens]) if tokens else state

    def reader(self, token: str) -> Callable[[np.ndarray], np.ndarray]:
        """The function of the state vector a token names; PolicyError for a token that names nothing."""
        if token not in self._readers:
            self._readers[token] = self._make(token)
        return self._readers[token]

    def _make(self, token: str) -> Callable[[np.ndarray], np.ndarray]:
        name, _, what = token.partition(":")
        groups = self.embodiment.groups
        if not what:
            joints = groups[name].joints if name in groups else (name,)
            missing = [j for j in joints if j not in self.slot]
            if missing:
                raise PolicyError(f"state token {token!r} names no group or joint of the action layout"
                                  f"{did_you_mean(name, [*self.embodiment.config.action.groups, *self.io.joints])}")
            index = np.array([self.slot[j] for j in joints])
            return lambda state: np.asarray(state)[index]
        group = groups.get(name)
        if group is None or any(j not in self.slot for j in group.joints):
            raise PolicyError(f"state token {token!r}: {name!r} is no group of the action layout"
                              f"{did_you_mean(name, self.embodiment.config.action.groups)}")
        index = np.array([self.slot[j] for j in group.joints])
        if what == "closure":
            span = self.gripper.closed - self.gripper.open
            return lambda state: self.gripper.open + span * closure(group, np.asarray(state)[index])
        if what == "fingers":
            mimics = [(j.mimic[0], j.mimic[1], j.mimic[2]) for j in self.embodiment.description.movable_joints
                      if j.mimic is not None and j.mimic[0] in group.joints]
            primary = np.array([group.joints.index(m[0]) for m in mimics], dtype=int)
            scale = np.array([m[1] for m in mimics])
            offset = np.array([m[2] for m in mimics])
            return lambda state: np.concatenate([np.asarray(state)[index],
                                                 scale * np.asarray(state)[index][primary] + offset])
        if what == "ee_pose":
            if not group.ee_frame:
                raise ActionSpaceError(f"state token {token!r}: arm {name!r} has no ee_frame")
            kinematics = self.embodiment.kinematics

            def pose(state: np.ndarray) -> np.ndarray:
                q = self.io.joint_vector(state)
                matrix = kinematics.frame_pose(q, group.ee_frame)
                return np.concatenate([matrix[:3, 3], pin.log3(matrix[:3, :3])])
            return pose
        raise PolicyError(f"state token {token!r}: no {what!r}; after ':' use closure, fingers or ee_pose")


def build_request(form: RequestFormat, reader: StateReader, observation: Observation) -> dict:
    """The request for `observation` in `form`."""
    images = {}
    for camera, image in observation.images.items():
        key = form.image_keys.get(camera, camera if not form.image_keys else None)
        if key is None:
            continue
        if form.image_size is not None:
            image = letterbox(image, *form.image_size)
        images[key] = np.ascontiguousarray(image.transpose(2, 0, 1)) if form.channels_first else image
    request = {form.images_key: images} if form.images_key else dict(images)
    for key, tokens in form.state_keys.items():
        request[key] = reader.read(tuple(tokens), observation.state).astype(form.state_dtype)
    request[form.prompt_key] = observation.instruction
    return request


def _arms(embodiment: Embodiment) -> list[JointGroup]:
    arms = [g for g in embodiment.commanded_groups if g.kind == "arm" and g.name in embodiment.config.action.groups]
    return sorted(arms, key=lambda g: (not g.name.startswith("left"), g.name))


def _camera(embodiment: Embodiment, *words: str, avoid: tuple[str, ...] = ()) -> str | None:
    """The first camera whose name has all `words` and none of `avoid`."""
    for name in embodiment.cameras:
        if all(w in name for w in words) and not any(a in name for a in avoid):
            return name
    return None


def _arm_and_gripper(embodiment: Embodiment, preset: str) -> tuple[JointGroup, JointGroup]:
    arms = _arms(embodiment)
    gripper = embodiment.end_effector(arms[0]) if arms else None
    if not arms or gripper is None:
        raise PolicyError(f"preset {preset} needs an arm with a gripper; {embodiment.name} has "
                          f"{'no arm' if not arms else 'no gripper on arm ' + arms[0].name}")
    return arms[0], gripper


def _cameras(embodiment: Embodiment, preset: str, roles: dict[str, str | None]) -> dict[str, str]:
    """{our camera: their key} for the roles found; the first role is required."""
    first = next(iter(roles))
    if roles[first] is None:
        raise PolicyError(f"preset {preset} needs a camera for {first!r}; {embodiment.name} has "
                          f"{', '.join(embodiment.cameras) or 'none'}: map yours with image_keys")
    return {camera: key for key, camera in roles.items() if camera is not None}


def droid(embodiment: Embodiment) -> Preset:
    """pi0/pi05-DROID: 7 joint velocities (x 0.2 rad per 15 Hz step) + gripper position (0 open, 1 closed)."""
    arm, gripper = _arm_and_gripper(embodiment, "droid")
    exterior = _camera(embodiment, avoid=("wrist",))
    images = _cameras(embodiment, "droid", {"observation/exterior_image_1_left": exterior,
                                            "observation/wrist_image_left": _camera(embodiment, "wrist")})
    request = RequestFormat("", images, (224, 224), False, {
        "observation/joint_position": (arm.name,),
        "observation/gripper_position": (f"{gripper.name}:closure",),
    }, state_dtype="float64")
    space = ActionSpace("joint_velocity", (arm.name, gripper.name), gripper=GripperMap(0.0, 1.0, 0.5),
                        velocity_scale=0.2 * 15)
    return Preset(request, space, 1 / 15, 8, 1.0)


def libero(embodiment: Embodiment) -> Preset:
    """LIBERO-trained pi0/pi05: tool deltas in the base frame (x 0.05 m, x 0.5 rad) + gripper (-1 open, +1 closed)."""
    arm, gripper = _arm_and_gripper(embodiment, "libero")
    images = _cameras(embodiment, "libero", {"observation/image": _camera(embodiment, avoid=("wrist",)),
                                             "observation/wrist_image": _camera(embodiment, "wrist")})
    request = RequestFormat("", images, (224, 224), False,
                            {"observation/state": (f"{arm.name}:ee_pose", f"{gripper.name}:fingers")},
                            state_dtype="float64")
    space = ActionSpace("ee_delta", (arm.name, gripper.name), "base", GripperMap(-1.0, 1.0),
                        translation_scale=0.05, rotation_scale=0.5)
    return Preset(request, space, 1 / 20, 5, 0.0)


def aloha(embodiment: Embodiment) -> Preset:
    """ALOHA pi0/pi05: two arms of 6 absolute joint positions + gripper (0 closed, 1 open), channel-first images."""
    arms = _arms(embodiment)
    grippers = [embodiment.end_effector(arm) for arm in arms]
    if len(arms) != 2 or None in grippers or any(len(a.joints) < 6 for a in arms):
        raise PolicyError(f"preset aloha needs two arms of at least 6 joints, each with a gripper or hand; "
                          f"{embodiment.name} has arms {[a.name for a in arms]}")
    columns = []
    for arm, gripper in zip(arms, grippers):
        columns += [*arm.joints[:6], gripper.name]  # a 7-joint arm's last joint holds
    cameras = {"cam_high": _camera(embodiment, "high") or _camera(embodiment, "head")
               or _camera(embodiment, avoid=("wrist", "low")),
               "cam_low": _camera(embodiment, "low"),
               "cam_left_wrist": _camera(embodiment, "left", "wrist"),
               "cam_right_wrist": _camera(embodiment, "right", "wrist")}
    request = RequestFormat("images", _cameras(embodiment, "aloha", cameras), (224, 224), True,
                            {"state": tuple(c if c not in (grippers[0].name, grippers[1].name) else f"{c}:closure"
                                            for c in columns)}, state_dtype="float64")
    space = ActionSpace("joint_position", tuple(columns), gripper=GripperMap(1.0, 0.0))
    return Preset(request, space, 1 / 50, 25, 0.0)


PRESETS: dict[str, Callable[[Embodiment], Preset]] = {"droid": droid, "libero": libero, "aloha": aloha}


def preset(name: str, embodiment: Embodiment) -> Preset:
    if name not in PRESETS:
        raise PolicyError(f"no openpi preset {name!r}{did_you_mean(name, PRESETS)}; presets: {', '.join(PRESETS)}")
    return PRESETS[name](embodiment)
