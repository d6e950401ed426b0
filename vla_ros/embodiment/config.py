"""The embodiment file `config/<name>.yaml` as frozen, validated dataclasses.

Each dataclass checks its own fields in __post_init__ and raises EmbodimentError with the key
relative to itself; `from_mapping` builds them from YAML data, rejects unknown keys, and prefixes
the key path, so every message reads `FILE: groups.arm.kp: PROBLEM` followed by the fix. Checks
that need the URDF live in `vla_ros.embodiment.embodiment`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from vla_ros.errors import VlaRosError, did_you_mean

KINDS = ("arm", "gripper", "hand", "torso", "head", "base", "legs")
END_EFFECTOR_KINDS = ("gripper", "hand")  # what closes on an object, at an arm's end
MODES = ("effort", "position", "velocity")
EFFORT_LAWS = ("inverse_dynamics", "pd")
BASE_CHANNELS = ("vx", "vy", "wz")
DEFAULT_ACTION_WIDTH = 32


class EmbodimentError(VlaRosError):
    """A mistake in an embodiment file: where (file, key), what is wrong, and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str, file: str | None = None):
        self.key, self.problem, self.fix, self.file = key, problem, fix, file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key}: {problem}\n  fix: {fix}")

    def within(self, prefix: str, file: str | None = None) -> EmbodimentError:
        """The same error with `prefix.` before its key (and the file, when given)."""
        key = f"{prefix}.{self.key}" if prefix and self.key else prefix or self.key
        return EmbodimentError(key, self.problem, self.fix, file or self.file)


def _per_joint(key: str, value, count: int, minimum: float, unit: str) -> None:
    """Check a scalar-or-list gain/limit: list length `count`, every value >= `minimum`."""
    values = _as_tuple(value)
    if isinstance(value, tuple) and len(value) != count:
        raise EmbodimentError(
            key, f"has {len(value)} values for {count} joints",
            f"give one value per joint ({count}) or a single value for all",
        )
    low = [v for v in values if not v >= minimum]
    if low:
        raise EmbodimentError(key, f"value {low[0]} is below {minimum}", f"use values >= {minimum} {unit}")


@dataclass(frozen=True)
class GroupConfig:
    """One named joint group (or the mobile base) of an embodiment."""

    kind: str
    joints: tuple[str, ...] = ()
    mode: str | None = None
    effort_law: str | None = None
    kp: float | tuple[float, ...] | None = None
    kd: float | tuple[float, ...] | None = None
    command_topic: str | None = None
    delegated: bool = False
    ee_frame: str | None = None
    accel_limit: float | tuple[float, ...] = 10.0
    soft_margin: float = 0.02
    armature: float = 0.1
    home: tuple[float, ...] | None = None
    channels: tuple[str, ...] = ()
    max_velocity: tuple[float, ...] = ()
    max_acceleration: tuple[float, ...] = ()
    velocity_limits: dict[str, float] = field(default_factory=dict)
    effort_limits: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise EmbodimentError("kind", f"{self.kind!r} is not a group kind{did_you_mean(self.kind, KINDS)}",
                                  f"use one of {', '.join(KINDS)}")
        for key, unit in (("velocity_limits", "[rad/s or m/s]"), ("effort_limits", "[Nm or N]")):
            for joint, limit in getattr(self, key).items():
                if joint not in self.joints:
                    raise EmbodimentError(f"{key}.{joint}", f"joint {joint!r} is not in this group"
                                          f"{did_you_mean(joint, self.joints)}", "name joints of the group")
                if not limit > 0:
                    raise EmbodimentError(f"{key}.{joint}", f"{limit} is not positive", f"give a limit > 0 {unit}")
        if self.kind == "base":
            self._check_base()
        elif self.delegated:
            self._check_delegated()
        else:
            self._check_commanded()

    def _check_base(self) -> None:
        for key in ("kp", "kd", "effort_law", "ee_frame", "home"):
            if getattr(self, key) is not None:
                raise EmbodimentError(key, "does not apply to a base (it takes velocities)",
                                      f"remove {key!r}; a base has channels, max_velocity, max_acceleration")
        if self.mode not in (None, "velocity"):
            raise EmbodimentError("mode", f"a base is velocity-commanded, not {self.mode!r}", "remove 'mode'")
        channels = list(self.channels)
        if not channels or channels != [c for c in BASE_CHANNELS if c in channels]:
            raise EmbodimentError("channels", f"{channels} is not an ordered subset of {list(BASE_CHANNELS)}",
                                  "use [vx, vy, wz] for a holonomic base or [vx, wz] for a differential one")
        for key in ("max_velocity", "max_acceleration"):
            values = getattr(self, key)
            if len(values) != len(channels) or not all(v > 0 for v in values):
                raise EmbodimentError(key, f"{list(values)} does not give one positive limit per channel {channels}",
                                      f"give {len(channels)} positive values [m/s or rad/s (per s)]")

    def _check_delegated(self) -> None:
        for key in ("mode", "effort_law", "kp", "kd", "command_topic", "ee_frame", "home"):
            if getattr(self, key) is not None:
                raise EmbodimentError(
                    key, "is set on a delegated group, which vla_ros never commands",
                    f"remove {key!r}, or set delegated: false if vla_ros should command this group",
                )
        if not self.joints:
            raise EmbodimentError("joints", "is empty", "list the joints the vendor stack owns")

    def _check_effort_law(self) -> None:
        if self.mode != "effort":
            if self.effort_law is not None:
                raise EmbodimentError("effort_law", f"applies to effort mode only (this group is {self.mode})",
                                      "remove 'effort_law'")
            return
        law = self.effort_law or EFFORT_LAWS[0]
        if law not in EFFORT_LAWS:
            raise EmbodimentError("effort_law", f"{law!r} is not an effort law{did_you_mean(law, EFFORT_LAWS)}",
                                  f"use one of {', '.join(EFFORT_LAWS)}")
        if law == "inverse_dynamics" and not all(g > 0 for key in ("kp", "kd") for g in _as_tuple(getattr(self, key))):
            raise EmbodimentError("effort_law", "inverse_dynamics (the default) needs kp > 0 and kd > 0 for every "
                                  "joint: they set its bandwidth sqrt(kp / I), with I = kd^2 / (4 kp)",
                                  "give positive gains, or use effort_law: pd")

    def _check_commanded(self) -> None:
        if not self.joints:
            raise EmbodimentError("joints", "is empty", "list the group's joints, as named in the URDF")
        twice = sorted({j for j in self.joints if self.joints.count(j) > 1})
        if twice:
            raise EmbodimentError("joints", f"lists {twice} more than once", "list each joint once")
        if self.mode not in MODES:
            raise EmbodimentError("mode", f"{self.mode!r} is not a control mode", f"use one of {', '.join(MODES)}")
        for key in ("kp", "kd"):
            if getattr(self, key) is None:
                raise EmbodimentError(key, "is missing", "give PD gains: one per joint, or one for all")
            _per_joint(key, getattr(self, key), len(self.joints), 0.0, "")
        self._check_effort_law()
        _per_joint("accel_limit", self.accel_limit, len(self.joints), 1e-9, "[rad/s^2 or m/s^2]")
        if not self.soft_margin >= 0:
            raise EmbodimentError("soft_margin", f"{self.soft_margin} is negative", "use a margin >= 0 [rad or m]")
        if not self.armature >= 0:
            raise EmbodimentError("armature", f"{self.armature} is negative",
                                  "give the reflected motor inertia >= 0 [kg m^2 or kg]")
        if self.home is not None and len(self.home) != len(self.joints):
            raise EmbodimentError("home", f"has {len(self.home)} values for {len(self.joints)} joints",
                                  "give one position per joint")
        if self.kind == "arm" and not self.ee_frame:
            raise EmbodimentError("ee_frame", "is missing for an arm",
                                  "name the URDF link at the tool centre point, e.g. ee_frame: tool0")
        for key in ("channels", "max_velocity", "max_acceleration"):
            if getattr(self, key):
                raise EmbodimentError(key, "only applies to a base", f"remove {key!r}")


@dataclass(frozen=True)
class CameraConfig:
    """A camera: its image topic, the URDF frame it is mounted on (x forward, z up), its image."""

    topic: str
    frame: str
    width: int = 224
    height: int = 224
    rate_hz: float = 10.0
    fovy_deg: float = 60.0

    def __post_init__(self):
        if not self.topic:
            raise EmbodimentError("topic", "is empty", "give the image topic, e.g. camera/front/image_raw")
        for key in ("width", "height", "rate_hz"):
            if not getattr(self, key) > 0:
                raise EmbodimentError(key, f"{getattr(self, key)} is not positive", f"give a positive {key}")
        if not 0 < self.fovy_deg < 180:
            raise EmbodimentError("fovy_deg", f"{self.fovy_deg} is outside (0, 180)",
                                  "give the vertical field of view in degrees")


@dataclass(frozen=True)
class ActionConfig:
    """The policy's action vector: groups in order, padded to `width` and masked."""

    groups: tuple[str, ...]
    width: int = DEFAULT_ACTION_WIDTH

    def __post_init__(self):
        if not self.width > 0:
            raise EmbodimentError("width", f"{self.width} is not positive",
                                  f"use the model's width, e.g. {DEFAULT_ACTION_WIDTH}")
        twice = sorted({g for g in self.groups if self.groups.count(g) > 1})
        if twice:
            raise EmbodimentError("groups", f"lists {twice} more than once", "list each group once")


@dataclass(frozen=True)
class LeRobotConfig:
    """How a LeRobot dataset recorded elsewhere maps onto this embodiment (vla_ros.data.lerobot).

    names: layout slot (joint or base channel) -> the dataset's name for it in `observation.state`
    and `action` (unlisted slots keep their own name); cameras: camera -> the dataset's image key
    (default `observation.images.<camera>`).
    """

    names: dict[str, str] = field(default_factory=dict)
    cameras: dict[str, str] = field(default_factory=dict)

    def dataset_names(self, layout: list[str]) -> list[str]:
        """The dataset's names for the layout's slots, in layout order."""
        return [self.names.get(name, name) for name in layout]


def lerobot_feature_names(info: dict, key: str) -> list[str] | None:
    """A LeRobot info.json's names of feature `key`'s entries (a list, or LeRobot v2's {"motors": [...]})."""
    names = info.get("features", {}).get(key, {}).get("names")
    if isinstance(names, dict):
        names = [name for group in names.values() for name in group]
    return [str(name) for name in names] if isinstance(names, list) else None


@dataclass(frozen=True)
class EmbodimentConfig:
    """One robot: its URDF (or xacro file and arguments), groups, cameras, action layout and control rate."""

    urdf: str
    groups: dict[str, GroupConfig]
    action: ActionConfig
    name: str | None = None
    xacro_args: dict[str, str] = field(default_factory=dict)
    from_topic: str | None = None
    package_dirs: tuple[str, ...] = ()
    control_rate_hz: float = 500.0
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    lerobot: LeRobotConfig = field(default_factory=LeRobotConfig)

    def __post_init__(self):
        unknown = sorted(set(self.lerobot.cameras) - set(self.cameras))
        if unknown:
            raise EmbodimentError("lerobot.cameras", f"names camera {unknown[0]!r}, which is not defined",
                                  f"use cameras from: {', '.join(self.cameras) or 'none'}")
        if self.xacro_args and not self.urdf.endswith(".xacro"):
            raise EmbodimentError("xacro_args", f"is set but urdf {self.urdf!r} is not a xacro file",
                                  "point 'urdf' at the .xacro file, or remove 'xacro_args'")
        if self.from_topic is not None and not self.from_topic:
            raise EmbodimentError("from_topic", "is empty",
                                  "name the topic the URDF was read from, e.g. /robot_description, or remove it")
        if not self.control_rate_hz > 0:
            raise EmbodimentError("control_rate_hz", f"{self.control_rate_hz} is not positive",
                                  "give the control loop rate in Hz, e.g. 500")
        owner: dict[str, str] = {}
        for name, group in self.groups.items():
            for joint in group.joints:
                if joint in owner:
                    raise EmbodimentError(f"groups.{name}.joints", f"joint {joint!r} is also in group {owner[joint]!r}",
                                          "put each joint in exactly one group")
                owner[joint] = name
        bases = [name for name, g in self.groups.items() if g.kind == "base"]
        if len(bases) > 1:
            raise EmbodimentError("groups", f"has more than one base: {bases}", "keep one group of kind base")
        self._check_action()

    def _check_action(self) -> None:
        for name in self.action.groups:
            if name not in self.groups:
                raise EmbodimentError("action.groups",
                                      f"names group {name!r}, which is not defined{did_you_mean(name, self.groups)}",
                                      f"use groups from: {', '.join(self.groups)}")
            if self.groups[name].delegated:
                raise EmbodimentError("action.groups",
                                      f"group {name!r} is delegated (vla_ros never commands it) but is in the action "
                                      f"vector",
                                      f"remove {name!r} from action.groups, or set groups.{name}.delegated: false")
        used = sum(self.slot_count(name) for name in self.action.groups)
        if used > self.action.width:
            raise EmbodimentError("action.width",
                                  f"the action groups need {used} slots, more than the padded width "
                                  f"{self.action.width}",
                                  f"raise action.width to at least {used} (the model must match) or drop groups")

    def slot_count(self, group: str) -> int:
        """Action-vector slots a group takes: one per joint, or one per base channel."""
        config = self.groups[group]
        return len(config.channels) if config.kind == "base" else len(config.joints)


def from_mapping(cls: type, data: object, key: str = ""):
    """Build dataclass `cls` from parsed YAML, checking keys and types; errors carry `key`."""
    if not isinstance(data, Mapping):
        raise EmbodimentError(key or "(top level)", f"expected a mapping of keys, got {_show(data)}",
                              f"write {cls.__name__.removesuffix('Config').lower()} settings as key: value lines")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise EmbodimentError(_join(key, str(name)), f"unknown key{did_you_mean(str(name), fields)}",
                                  f"allowed keys here: {', '.join(fields)}")
    missing = [name for name, f in fields.items()
               if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise EmbodimentError(_join(key, missing[0]), "is missing", f"add {missing[0]!r} (required)")
    values = {name: _convert(value, hints[name], _join(key, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except EmbodimentError as error:
        raise error.within(key) from None


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: object) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing"


def _convert(value: object, hint: object, key: str):
    """Coerce one YAML value to the annotated type (str, int, float, bool, tuples, dicts, dataclasses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        same_shape = [o for o in options if (typing.get_origin(o) is tuple) == isinstance(value, list)]
        try:
            if same_shape:
                return _convert(value, same_shape[0], key)
        except EmbodimentError as error:
            if error.key != key:  # a bad item inside a list: that message is the precise one
                raise
        raise EmbodimentError(key, f"expected {' or '.join(map(_describe, options))}, got {_show(value)}",
                              f"give {_describe(options[0])}")
    if origin is tuple:
        if not isinstance(value, list):
            raise EmbodimentError(key, f"expected a list, got {_show(value)}", "write a list, e.g. [a, b]")
        return tuple(_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise EmbodimentError(key, f"expected a mapping, got {_show(value)}", "write name: settings entries")
        return {str(name): _convert(item, args[1], _join(key, str(name))) for name, item in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, key)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise EmbodimentError(key, f"expected {_describe(hint)}, got {_show(value)}", f"give {_describe(hint)}")


def _describe(hint: object) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(hint, str(hint))
