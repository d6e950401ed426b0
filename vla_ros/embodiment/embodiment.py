"""An embodiment: an embodiment file checked against its URDF, with limits, gains and layout as arrays.

`load_embodiment("arm7")` or `load_embodiment("path/to/robot.yaml")` is the one way every other
part (controller, policy, simulator, recorder) reads a robot.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from vla_ros import resources
from vla_ros.embodiment.config import EFFORT_LAWS, END_EFFECTOR_KINDS, EmbodimentConfig, EmbodimentError, from_mapping
from vla_ros.embodiment.kinematics import Kinematics
from vla_ros.embodiment.layout import ActionLayout
from vla_ros.embodiment.source import load_description
from vla_ros.embodiment.urdf import UrdfError
from vla_ros.errors import did_you_mean


@dataclass(frozen=True, eq=False)
class JointGroup:
    """A group of URDF joints with everything the controller needs, as (n,) arrays.

    Position limits are the URDF's (+-inf for continuous joints); `soft_margin` [rad | m] is kept
    inside them. Velocity [rad/s | m/s] and effort [Nm | N] limits are the URDF's unless the group's
    velocity_limits / effort_limits name the joint (0 where neither gives one); acceleration
    limits [rad/s^2 | m/s^2] come from the embodiment file, and so does `armature` [kg m^2 | kg],
    the reflected motor inertia the URDF cannot say (the simulator adds it to each joint).
    `effort_law` is how an effort group's torques are computed (control/pd.py), None otherwise.
    """

    name: str
    kind: str
    joints: tuple[str, ...]
    mode: str | None
    effort_law: str | None
    delegated: bool
    command_topic: str | None
    ee_frame: str | None
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    effort_limit: np.ndarray
    accel_limit: np.ndarray
    continuous: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    soft_margin: float
    armature: float
    home: np.ndarray

    def grip_range(self) -> tuple[np.ndarray, np.ndarray]:
        """A gripper's or hand's (open, closed) positions: home is open, closed the limit farther from it."""
        closed_low = np.abs(self.home - self.lower) > np.abs(self.upper - self.home)
        return np.where(closed_low, self.upper, self.lower), np.where(closed_low, self.lower, self.upper)


@dataclass(frozen=True, eq=False)
class BaseGroup:
    """A mobile base commanded by planar velocity channels (vx [m/s], vy [m/s], wz [rad/s])."""

    name: str
    channels: tuple[str, ...]
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    command_topic: str
    wheel_joints: tuple[str, ...]


@dataclass(frozen=True)
class Camera:
    """A camera on a URDF link: its topic, image size [px], rate [Hz] and vertical field of view [deg]."""

    name: str
    topic: str
    frame: str
    width: int
    height: int
    rate_hz: float
    fovy_deg: float


class Embodiment:
    """One robot, validated: its description, groups, base, cameras and action layout.

    Attributes:
        name: the embodiment's name (the file's stem unless it says otherwise).
        path: the embodiment file.
        config: the file's contents as validated dataclasses.
        description: the parsed URDF.
        groups: joint groups by name, in file order (delegated ones included).
        base: the mobile base, if any.
        cameras: cameras by name.
        layout: the policy's action vector.
        control_rate_hz: the controller's loop rate.
    """

    def __init__(self, config: EmbodimentConfig, path: Path):
        self.config = config
        self.path = path
        self.name = config.name or path.stem
        self.control_rate_hz = config.control_rate_hz
        package_dirs = tuple(str(self.path.parent / Path(d).expanduser()) for d in config.package_dirs)
        try:
            self.description = load_description(self._urdf_path(), package_dirs, config.xacro_args)
        except UrdfError as error:
            raise EmbodimentError("urdf", error.problem, error.fix or "fix the URDF or point 'urdf' at a valid one",
                                  str(path)) from None
        self.groups = {}
        self.base = None
        for name, group in config.groups.items():
            if group.kind == "base":
                self.base = self._base(name, group)
            else:
                self.groups[name] = self._joint_group(name, group)
        self.cameras = {name: self._camera(name, camera) for name, camera in config.cameras.items()}
        self.layout = ActionLayout.build(config.action.width, [
            (name, self.base.channels if self.base and name == self.base.name else self.groups[name].joints)
            for name in config.action.groups
        ])
        missing = self.description.unresolved_meshes()
        if missing:
            link, uri = missing[0]
            self._fail("urdf", f"{len(missing)} mesh file(s) cannot be found, first {uri!r} of link {link!r}",
                       "add the directory holding the package to package_dirs, or set "
                       "AMENT_PREFIX_PATH/ROS_PACKAGE_PATH")

    def _fail(self, key: str, problem: str, fix: str):
        raise EmbodimentError(key, problem, fix, str(self.path))

    def _urdf_path(self) -> Path:
        urdf = self.config.urdf
        if urdf.startswith("package://"):
            package, _, rest = urdf[len("package://"):].partition("/")
            if package == resources.PACKAGE:
                return resources.share_dir() / rest
            self._fail("urdf", f"{urdf!r}: only package://vla_ros/... is resolved here",
                       "give a path relative to this file, or an absolute path")
        path = Path(urdf).expanduser()
        return path if path.is_absolute() else (self.path.parent / path)

    def _joint_group(self, name: str, group) -> JointGroup:
        key = f"groups.{name}"
        movable = {j.name: j for j in self.description.movable_joints}
        for joint_name in group.joints:
            joint = self.description.joints.get(joint_name)
            if joint is None:
                self._fail(f"{key}.joints", f"joint {joint_name!r} is not in {self.description.path.name}"
                           f"{did_you_mean(joint_name, movable)}",
                           f"use movable joints of the URDF: {', '.join(movable)}")
            if not joint.movable:
                self._fail(f"{key}.joints", f"joint {joint_name!r} is {joint.type}, not movable",
                           "remove it from the group")
            if joint.mimic:
                self._fail(f"{key}.joints", f"joint {joint_name!r} mimics {joint.mimic[0]!r} and follows it",
                           f"list {joint.mimic[0]!r} instead")
        joints = [movable[j] for j in group.joints]
        if group.ee_frame is not None and group.ee_frame not in self.description.links:
            self._fail(f"{key}.ee_frame",
                       f"link {group.ee_frame!r} is not in the URDF"
                       f"{did_you_mean(group.ee_frame, self.description.links)}",
                       "name a link of the URDF")
        velocity = np.array([group.velocity_limits.get(j.name, j.velocity) for j in joints])
        effort = np.array([group.effort_limits.get(j.name, j.effort) for j in joints])
        if not group.delegated:
            for joint, joint_velocity, joint_effort in zip(joints, velocity, effort):
                if not joint_velocity > 0:
                    self._fail(f"{key}.joints", f"the URDF gives joint {joint.name!r} no velocity limit",
                               f"add <limit velocity=\"...\"/> to joint {joint.name!r} in the URDF, or "
                               f"velocity_limits: {{{joint.name}: ...}} to the group")
                if group.mode == "effort" and not joint_effort > 0:
                    self._fail(f"{key}.mode",
                               f"effort mode needs an effort limit, and the URDF gives joint {joint.name!r} none",
                               f"add <limit effort=\"...\"/> to joint {joint.name!r} or effort_limits: "
                               f"{{{joint.name}: ...}} to the group, or use mode: position")
        n = len(joints)
        lower = np.array([j.lower for j in joints])
        upper = np.array([j.upper for j in joints])
        home = np.array(group.home) if group.home is not None else np.clip(np.zeros(n), lower, upper)
        outside = [(j.name, h) for j, h, lo, hi in zip(joints, home, lower, upper) if not lo <= h <= hi]
        if outside:
            joint_name, value = outside[0]
            self._fail(f"{key}.home", f"{joint_name}={value} is outside its URDF limits",
                       "give a home position within the joint limits")
        return JointGroup(
            name=name, kind=group.kind, joints=tuple(group.joints), mode=group.mode, delegated=group.delegated,
            effort_law=group.effort_law or EFFORT_LAWS[0] if group.mode == "effort" else None,
            command_topic=None if group.delegated else group.command_topic or f"{name}_controller/commands",
            ee_frame=group.ee_frame, lower=lower, upper=upper,
            velocity_limit=velocity, effort_limit=effort,
            accel_limit=np.broadcast_to(np.array(group.accel_limit, dtype=float), (n,)).copy(),
            continuous=np.array([j.continuous for j in joints], dtype=bool),
            kp=np.broadcast_to(np.array(group.kp if group.kp is not None else 0.0, dtype=float), (n,)).copy(),
            kd=np.broadcast_to(np.array(group.kd if group.kd is not None else 0.0, dtype=float), (n,)).copy(),
            soft_margin=group.soft_margin, armature=group.armature, home=home,
        )

    def _base(self, name: str, group) -> BaseGroup:
        for joint_name in group.joints:
            if joint_name not in self.description.joints:
                self._fail(f"groups.{name}.joints", f"wheel joint {joint_name!r} is not in the URDF"
                           f"{did_you_mean(joint_name, self.description.joints)}",
                           "list the URDF's wheel joints, or none")
        return BaseGroup(name, group.channels, np.array(group.max_velocity), np.array(group.max_acceleration),
                         group.command_topic or "cmd_vel", tuple(group.joints))

    def _camera(self, name: str, camera) -> Camera:
        if camera.frame not in self.description.links:
            self._fail(f"cameras.{name}.frame",
                       f"link {camera.frame!r} is not in the URDF{did_you_mean(camera.frame, self.description.links)}",
                       "name the URDF link the camera is mounted on")
        return Camera(name, camera.topic, camera.frame, camera.width, camera.height, camera.rate_hz, camera.fovy_deg)

    @property
    def commanded_groups(self) -> list[JointGroup]:
        """Joint groups vla_ros commands (not delegated), in file order."""
        return [g for g in self.groups.values() if not g.delegated]

    @property
    def delegated_groups(self) -> list[JointGroup]:
        return [g for g in self.groups.values() if g.delegated]

    @property
    def tool_action_groups(self) -> tuple[str, ...]:
        """The action groups an end-effector action space drives, in order (torso and head hold).

        Arms (through their tools), grippers, hands and the base.
        """
        base = self.base.name if self.base is not None else None
        return tuple(name for name in self.config.action.groups
                     if name == base or self.groups[name].kind in ("arm", *END_EFFECTOR_KINDS))

    def end_effector(self, arm: JointGroup) -> JointGroup | None:
        """The gripper or hand mounted below `arm`'s last joint, if any."""
        for group in self.commanded_groups:
            if group.kind in END_EFFECTOR_KINDS:
                above = self.description.chain_to_root(self.description.joints[group.joints[0]].parent)
                if arm.joints[-1] in {j.name for j in above}:
                    return group
        return None

    @cached_property
    def kinematics(self) -> Kinematics:
        """Pinocchio kinematics and dynamics of the URDF (built on first use)."""
        return Kinematics(self.description)


def embodiment_path(name_or_path: str | Path) -> Path:
    """The file for a shipped embodiment's name (`arm7`) or an explicit path."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    config_dir = resources.share_dir() / "config"
    shipped = sorted(p.stem for p in config_dir.glob("*.yaml"))
    candidate = config_dir / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise EmbodimentError(
            "(embodiment)", f"no embodiment named {str(name_or_path)!r}{did_you_mean(str(name_or_path), shipped)}",
            f"use a shipped one ({', '.join(shipped)}) or a path to an embodiment file",
        )
    return candidate


def load_embodiment(name_or_path: str | Path) -> Embodiment:
    """Read, validate and build an embodiment; every mistake raises EmbodimentError naming the file."""
    path = embodiment_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise EmbodimentError("(file)", f"cannot read it ({error.strerror})", "check the path", str(path)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EmbodimentError("(file)", f"not valid YAML{where}: {getattr(error, 'problem', error)}",
                              "fix the YAML syntax", str(path)) from None
    try:
        config = from_mapping(EmbodimentConfig, data)
    except EmbodimentError as error:
        raise error.within("", str(path)) from None
    return Embodiment(config, path)
