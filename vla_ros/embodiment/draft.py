"""`vla-ros embodiment init`: draft an embodiment file from any URDF.

The draft is a guess a person should read: groups come from joint names and the kinematic tree,
gains from effort limits and the inertia each joint moves; comments in the file mark what to check.
It passes its own check on any description MuJoCo and pinocchio load: a commanded joint the URDF
gives no velocity limit gets a conservative one in the file, and one with no effort limit puts its
group in position mode.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from vla_ros.embodiment.config import DEFAULT_ACTION_WIDTH, END_EFFECTOR_KINDS
from vla_ros.embodiment.ik import TOOL_DOWN, ArmIK
from vla_ros.embodiment.kinematics import Kinematics
from vla_ros.embodiment.source import load_description
from vla_ros.embodiment.urdf import Joint, RobotDescription

# Joint-name keywords per group kind, tried in this order; a joint matching none may be an arm.
KIND_KEYWORDS = (
    ("base", ("wheel", "caster", "castor")),
    ("legs", ("hip", "knee", "ankle", "leg", "thigh", "shin", "calf", "foot", "toe")),
    ("hand", ("hand", "thumb", "index", "middle", "ring", "pinky", "little", "palm")),
    ("gripper", ("finger", "gripper", "jaw", "claw", "grip")),
    ("head", ("head", "neck", "gaze")),
    ("torso", ("torso", "waist", "trunk", "spine", "chest")),
)
EE_KEYWORDS = ("tcp", "tool", "ee", "eef", "grasp", "flange")
CAMERA_KEYWORDS = ("camera", "cam", "rgb", "xtion", "realsense", "kinect", "zed")
NOT_CAMERA_KEYWORDS = ("optical", "depth", "ir", "infra", "imu", "gyro", "accel", "info", "mount")
# Gains: aim for this closed-loop bandwidth, but saturate the joint's effort no sooner than
# at this position error, and critically damp whatever stiffness results.
BANDWIDTH_HZ = 4.0
SATURATION_ERROR = {"revolute": 0.1, "continuous": 0.1, "prismatic": 0.02}  # [rad] or [m]
INERTIA_SAMPLES = 64
ARMATURE = 0.1  # [kg m^2 | kg] assumed reflected motor inertia; written into the draft to check
# [rad | m] kept inside the position limits, but never more than this share of a joint's range
# (a Stretch's four 0.13 m telescope joints would lose 30% of their travel to 0.02 m).
SOFT_MARGIN, SOFT_MARGIN_SHARE = 0.02, 0.05
# Written for commanded joints whose URDF <limit> has no velocity: slow enough to be safe anywhere.
DEFAULT_VELOCITY = {"revolute": 0.5, "continuous": 0.5, "prismatic": 0.05}  # [rad/s] or [m/s]
# Directions [rad] of the drafted home's tool from the arm's first joint: ahead, left, right, behind;
# the first where the tool gets within HOME_REACHED [m] pointing down is taken.
HOME_HEADINGS = (0.0, np.pi / 2, -np.pi / 2, np.pi)
HOME_REACHED = 0.02


def tokens(name: str) -> list[str]:
    """Lower-case words of a name: `LShoulderPitch` and `l_shoulder_pitch` give the same words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z]+", spaced.lower()) if t]


def _matches(name: str, keywords: tuple[str, ...]) -> bool:
    return any(t == k or (len(k) > 2 and t.startswith(k)) for t in tokens(name) for k in keywords)


def side_of(names: list[str]) -> str | None:
    """'left' or 'right' when the names say so (left_/l_/L...), else None."""
    votes = {"left": 0, "right": 0}
    for name in names:
        words = tokens(name)
        votes["left"] += any(w in ("left", "l") for w in words)
        votes["right"] += any(w in ("right", "r") for w in words)
    if votes["left"] != votes["right"]:
        return max(votes, key=votes.get)
    return None


@dataclass
class DraftGroup:
    """A joint group `init` found in the URDF, before it is written as a group of the file."""

    name: str
    kind: str
    joints: list[Joint]
    notes: list[str] = field(default_factory=list)
    ee_frame: str | None = None
    channels: tuple[str, ...] = ()


class Drafter:
    """Finds groups, cameras and gains in a robot description."""

    def __init__(self, description: RobotDescription):
        self.description = description
        self.kinematics = Kinematics(description)
        self.independent = [j for j in description.movable_joints if j.mimic is None]
        self.groups: list[DraftGroup] = []
        self.unassigned: list[Joint] = []
        self.kind_of = {j.name: self._kind(j) for j in self.independent}
        self._find_groups()

    def _kind(self, joint: Joint) -> str | None:
        """By the joint's name; failing that, by its child link's name, for a last joint only.

        A wrist joint whose child link is called "gripper" still belongs to the arm.
        """
        for kind, keywords in KIND_KEYWORDS:
            if _matches(joint.name, keywords):
                return kind
        below = self.description.subtree_links(joint.child)
        if any(j.movable for link in below for j in self.description.child_joints(link)):
            return None
        return next((kind for kind, keywords in KIND_KEYWORDS if _matches(joint.child, keywords)), None)

    def _movable_parent(self, joint: Joint) -> Joint | None:
        """The nearest independent movable joint above `joint`."""
        ancestors = self.description.chain_to_root(joint.parent)
        return next((j for j in reversed(ancestors) if j.movable and j.mimic is None), None)

    def _find_groups(self) -> None:
        by_kind = {kind: [j for j in self.independent if self.kind_of[j.name] == kind] for kind, _ in KIND_KEYWORDS}
        self._arms_and_torso([j for j in self.independent if self.kind_of[j.name] is None], by_kind["torso"])
        if by_kind["head"]:
            self.groups.append(DraftGroup("head", "head", by_kind["head"]))
        self._end_effectors(by_kind["gripper"] + by_kind["hand"])
        if by_kind["legs"]:
            self.groups.append(DraftGroup("legs", "legs", by_kind["legs"], [
                "legs look like a humanoid's or legged base's: delegated to the vendor's balance stack",
            ]))
        self._base(by_kind["base"])

    def _arms_and_torso(self, candidates: list[Joint], torso: list[Joint]) -> None:
        """Split unclassified joints into serial chains; a segment that branches is torso."""
        names = {j.name for j in candidates}
        children: dict[str | None, list[Joint]] = {}
        for joint in candidates:
            parent = self._movable_parent(joint)
            children.setdefault(parent.name if parent is not None and parent.name in names else None, []).append(joint)
        arms: list[list[Joint]] = []

        def walk(start: Joint) -> None:
            segment = [start]
            while len(children.get(segment[-1].name, [])) == 1:
                segment.append(children[segment[-1].name][0])
            below = children.get(segment[-1].name, [])
            if below:
                torso.extend(segment)
                for child in below:
                    walk(child)
            elif len(segment) >= 3:
                arms.append(segment)
            else:
                self.unassigned.extend(segment)

        for root in children.get(None, []):
            walk(root)
        if torso:
            self.groups.append(DraftGroup("torso", "torso", sorted(torso, key=self.independent.index)))
        sides = [side_of([j.name for j in arm]) for arm in arms]
        for index, (arm, side) in enumerate(zip(arms, sides)):
            unique_side = side is not None and sides.count(side) == 1
            name = f"{side}_arm" if unique_side and len(arms) > 1 else ("arm" if index == 0 else f"arm_{index + 1}")
            self.groups.append(DraftGroup(name, "arm", arm, ee_frame=self._ee_frame(arm[-1])))

    def _ee_frame(self, last: Joint) -> str:
        """A tool-centre-point-like link rigidly attached below the arm's last joint, else its link."""
        rigid, frontier = [last.child], [last.child]
        while frontier:
            link = frontier.pop()
            for joint in self.description.child_joints(link):
                if joint.type == "fixed":
                    rigid.append(joint.child)
                    frontier.append(joint.child)
        for keyword in EE_KEYWORDS:
            found = [link for link in rigid if keyword in tokens(link)]
            if found:
                return found[0]
        return last.child

    def _end_effectors(self, joints: list[Joint]) -> None:
        """Grippers and hands, one group per arm they hang from."""
        arms = [g for g in self.groups if g.kind == "arm"]
        owners: dict[str, list[Joint]] = {}
        for joint in joints:
            chain = {j.name for j in self.description.chain_to_root(joint.parent)}
            arm = next((a for a in arms if a.joints[-1].name in chain), None)
            owners.setdefault(arm.name if arm else side_of([joint.name]) or "", []).append(joint)
        for owner, members in owners.items():
            kind = "hand" if any(self.kind_of[j.name] == "hand" for j in members) else "gripper"
            prefix = owner.removesuffix("_arm").removesuffix("arm").rstrip("_")
            name = f"{prefix}_{kind}" if prefix and len(owners) > 1 else kind
            self.groups.append(DraftGroup(name, kind, members))

    def _base(self, wheels: list[Joint]) -> None:
        drive = [w for w in wheels if not _matches(w.name, ("caster", "castor"))]
        if drive:
            differential = len(drive) == 2 and side_of([drive[0].name]) != side_of([drive[1].name])
            channels = ("vx", "wz") if differential else ("vx", "vy", "wz")
            note = ("two drive wheels: a differential base" if differential
                    else f"{len(drive)} drive wheels: assumed holonomic (mecanum/omni)")
            self.groups.append(DraftGroup("base", "base", wheels, [note], channels=channels))

    def cameras(self) -> list[tuple[str, str]]:
        """(name, link) of links that look like cameras, outermost only."""
        found = [link for link in self.description.links
                 if _matches(link, CAMERA_KEYWORDS) and not _matches(link, NOT_CAMERA_KEYWORDS)]
        outer = [link for link in found
                 if not any(j.child == link and j.type == "fixed" and j.parent in found
                            for j in self.description.joints.values())]
        names = []
        for link in outer:
            words = [t for t in tokens(link) if t not in ("link", "frame")]
            names.append(("_".join(words) or link, link))
        return names

    def gains(self, group: DraftGroup) -> tuple[np.ndarray, np.ndarray]:
        """(kp, kd) per joint, bandwidth-limited by the inertia moved and effort-limited by the URDF.

        The inertia moved is the links' plus the motor's ARMATURE.
        """
        links = self.inertia[self.kinematics.index([j.name for j in group.joints])]
        inertia = np.maximum(links, 1e-4) + ARMATURE
        omega = 2 * np.pi * BANDWIDTH_HZ
        effort = np.array([j.effort if j.effort > 0 else np.inf for j in group.joints])
        saturation = np.array([SATURATION_ERROR[j.type] for j in group.joints])
        kp = np.minimum(inertia * omega**2, effort / saturation)
        return kp, 2 * np.sqrt(kp * inertia)

    def home(self, group: DraftGroup) -> np.ndarray:
        """A start pose for an arm: the tool pointing down over the work area beside its first joint.

        The target is 45% of the arm's length away from the first joint horizontally; above that
        joint for an arm standing on a turntable joint (vertical first axis), below it for a
        shoulder. Ahead (+x) when the tool gets there pointing down, else whichever of left, right
        and behind it gets nearest (a Stretch's telescoping arm reaches out sideways).
        """
        kinematics = self.kinematics
        q0 = np.array([np.clip(0.0, j.lower, j.upper) for j in map(self.description.joints.get,
                                                                   kinematics.joint_names)])
        frames = [j.child for j in group.joints] + [group.ee_frame]
        points = np.array([kinematics.frame_pose(q0, frame)[:3, 3] for frame in frames])
        length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
        first = group.joints[0]
        axis = kinematics.frame_pose(q0, first.child)[:3, :3] @ first.axis
        rise = 0.2 if abs(axis[2]) > 0.9 else -0.35
        best, best_error = None, np.inf
        for heading in HOME_HEADINGS:
            offset = np.array([0.45 * length * np.cos(heading), 0.45 * length * np.sin(heading), rise * length])
            q, error = self._tool_down_at(group, q0, points[0] + offset)
            if error < best_error:
                best, best_error = q, error
            if best_error < HOME_REACHED:
                break
        return best

    def _tool_down_at(self, group: DraftGroup, q0: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """(the arm's joints, error [m]) of the best of a few IK solutions putting the tool at `target`.

        The tool should point down: the error counts 0.1 m for one pointing up.
        """
        kinematics = self.kinematics
        names = [j.name for j in group.joints]
        index = kinematics.index(names)
        lower = np.array([j.lower if np.isfinite(j.lower) else -np.pi for j in group.joints])
        upper = np.array([j.upper if np.isfinite(j.upper) else np.pi for j in group.joints])
        rng = np.random.default_rng(0)
        starts = [q0[index], (lower + upper) / 2, *(rng.uniform(lower, upper) for _ in range(6))]
        best, best_error = None, np.inf
        for start in starts:  # DLS finds a local solution: keep the best of a few starts
            ik = ArmIK(kinematics, names, group.ee_frame, lower, upper, posture=start)
            q = q0.copy()
            q[index] = start
            q, residual = ik.solve(q, target, TOOL_DOWN, tolerance=0.005, iterations=300)
            error = residual + 0.1 * (1.0 - ik.pose(q)[:3, 2] @ TOOL_DOWN)
            if error < best_error:
                best, best_error = q[index], error
        return np.clip(best, lower + 1e-4, upper - 1e-4), best_error  # stays inside the limits once printed

    @cached_property
    def inertia(self) -> np.ndarray:
        """Per joint, the 90th percentile over seeded random configurations of the inertia it moves."""
        joints = [self.description.joints[name] for name in self.kinematics.joint_names]
        lower = np.array([j.lower if np.isfinite(j.lower) else -np.pi for j in joints])
        upper = np.array([j.upper if np.isfinite(j.upper) else np.pi for j in joints])
        rng = np.random.default_rng(0)
        samples = [self.kinematics.inertia_diagonal(rng.uniform(lower, upper)) for _ in range(INERTIA_SAMPLES)]
        return np.percentile(samples, 90, axis=0)


ACTION_ORDER = ("arm", "torso", "head", "gripper", "hand", "base")


def draft_embodiment(urdf: Path, output: Path, xacro_args: Mapping[str, str] | None = None,
                     from_topic: str | None = None) -> str:
    """The text of an embodiment file for `urdf` (a URDF or xacro file), to be written at `output`.

    `xacro_args` are kept in the file so loading expands the xacro file the same way; `from_topic`
    notes the topic a URDF saved by `init --from-topic` was read from.
    """
    description = load_description(urdf, (), xacro_args)
    drafter = Drafter(description)
    folder = output.resolve().parent
    lines = [
        f"# Embodiment drafted by `vla-ros embodiment init` from {urdf.name}.",
        "# A guess to review: lines marked CHECK need a person's look. Validate with",
        f"# `vla-ros embodiment check {output}`.",
        f"name: {output.stem}",
        f"urdf: {os.path.relpath(urdf.resolve(), folder)}",
    ]
    if xacro_args:
        lines.append(f"xacro_args: {{{', '.join(f'{k}: {json.dumps(str(v))}' for k, v in xacro_args.items())}}}")
    if from_topic:
        lines.append(f"from_topic: {from_topic}  # the URDF above was read from this topic")
    package_dirs = _package_dirs(description)
    if package_dirs:
        lines.append(f"package_dirs: [{', '.join(os.path.relpath(d, folder) for d in package_dirs)}]"
                     "  # where package:// meshes were found")
    lines += ["control_rate_hz: 500.0", "groups:"]
    if not drafter.groups:
        lines.append("  {}  # CHECK: no movable joints found to group")
    for group in drafter.groups:
        lines += _group_lines(group, drafter)
    if drafter.unassigned:
        names = ", ".join(j.name for j in drafter.unassigned)
        lines.append(f"  # CHECK: not in any group (never commanded): {names}")
    cameras = drafter.cameras()
    if cameras:
        lines.append("cameras:")
        for name, link in cameras:
            lines += [
                f"  {name}:",
                f"    topic: camera/{name}/image_raw",
                f"    frame: {link}  # CHECK: the camera looks along this link's +x with +z up",
                "    width: 224",
                "    height: 224",
                "    rate_hz: 10.0",
                "    fovy_deg: 60.0",
            ]
    else:
        lines.append("cameras: {}  # CHECK: no camera link found; add name: {topic, frame, width, height}")
    action_groups = sorted(
        (g for g in drafter.groups if g.kind != "legs"), key=lambda g: ACTION_ORDER.index(g.kind)
    )
    used = sum(len(g.channels) if g.kind == "base" else len(g.joints) for g in action_groups)
    width = DEFAULT_ACTION_WIDTH if used <= DEFAULT_ACTION_WIDTH else -(-used // 8) * 8
    lines += [
        "action:",
        f"  groups: [{', '.join(g.name for g in action_groups)}]",
        f"  width: {width}" + ("" if width == DEFAULT_ACTION_WIDTH else
                               f"  # CHECK: {used} slots do not fit the default {DEFAULT_ACTION_WIDTH}; the model must "
                               f"match"),
    ]
    return "\n".join(lines) + "\n"


def _package_dirs(description: RobotDescription) -> list[Path]:
    """The directories package:// mesh URIs of `description` were found in, in first-use order."""
    found: dict[Path, None] = {}
    for link in description.links.values():
        for uri in link.meshes:
            resolved = description.resolve_package_uri(uri)
            if resolved is not None:
                found.setdefault(resolved[0])
    return list(found)


def _group_lines(group: DraftGroup, drafter: Drafter) -> list[str]:
    lines = [f"  {group.name}:"] + [f"    # CHECK: {note}" for note in group.notes]
    lines.append(f"    kind: {group.kind}")
    joint_list = f"[{', '.join(j.name for j in group.joints)}]"
    if group.kind == "base":
        limits = {"vx": 0.5, "vy": 0.5, "wz": 1.0}
        lines += [
            f"    joints: {joint_list}  # wheels, turned by the base's own driver",
            f"    channels: [{', '.join(group.channels)}]",
            f"    max_velocity: [{', '.join(str(limits[c]) for c in group.channels)}]  # CHECK: [m/s, rad/s]",
            f"    max_acceleration: [{', '.join(str(2 * limits[c]) for c in group.channels)}]",
            "    command_topic: cmd_vel",
        ]
        return lines
    lines.append(f"    joints: {joint_list}")
    if group.kind == "legs":
        return lines + ["    delegated: true"]
    position_mode = group.kind in END_EFFECTOR_KINDS or not all(j.effort > 0 for j in group.joints)
    kp, kd = drafter.gains(group)
    mode_note = ("hardware closes the loop on positions" if position_mode
                 else "torques from vla_ros's PD law; use position if the hardware closes its own loop")
    lines += [
        f"    mode: {'position' if position_mode else 'effort'}  # {mode_note}",
        f"    kp: {_numbers(kp)}  # CHECK: from effort limits and the inertia each joint moves",
        f"    kd: {_numbers(kd)}",
        "    accel_limit: 10.0  # CHECK: [rad/s^2 or m/s^2]",
        f"    soft_margin: {soft_margin(group.joints):.3g}",
        f"    armature: {ARMATURE}  # CHECK: reflected motor inertia [kg m^2 or kg]; the gains assume it",
    ]
    unlimited = [j for j in group.joints if not j.velocity > 0]
    if unlimited:
        limits = ", ".join(f"{j.name}: {DEFAULT_VELOCITY[j.type]}" for j in unlimited)
        lines.append(f"    velocity_limits: {{{limits}}}  # CHECK: the URDF gives none; [rad/s or m/s]")
    if group.ee_frame:
        lines.append(f"    ee_frame: {group.ee_frame}  # CHECK: the tool centre point")
        lines.append(f"    home: {_numbers(drafter.home(group), digits=6)}  # CHECK: start pose, tool down over the "
                     f"work area (IK)")
    return lines


def soft_margin(joints: list[Joint]) -> float:
    """[rad | m] SOFT_MARGIN, or less for a group with a joint of a short range."""
    ranges = [j.upper - j.lower for j in joints if np.isfinite(j.upper - j.lower) and j.upper > j.lower]
    return min([SOFT_MARGIN, *(SOFT_MARGIN_SHARE * r for r in ranges)])


def _numbers(values: np.ndarray, digits: int = 4) -> str:
    return "[" + ", ".join(f"{v:.{digits}g}" for v in values) + "]"
