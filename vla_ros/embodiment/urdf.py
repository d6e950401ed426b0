"""A robot description read from a URDF: joints, limits, the kinematic tree, and its mesh files.

Parsing is yourdfpy's; on top of it this module checks the structure a controller relies on (one
root, every joint's links present, no joint named twice, limits on every limited joint, mimic
targets that exist) and resolves mesh URIs (package://, file://, relative, absolute).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import yourdfpy

from vla_ros.errors import VlaRosError

MOVABLE_TYPES = ("revolute", "continuous", "prismatic")


class UrdfError(VlaRosError):
    """A URDF that cannot be used, with the file and what is wrong in it."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Joint:
    """One URDF joint. Limits are +-inf where the URDF has none (continuous joints)."""

    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray  # (4, 4) parent -> joint frame at zero position
    axis: np.ndarray  # (3,) unit axis in the joint frame
    lower: float  # [rad] or [m]
    upper: float
    velocity: float  # [rad/s] or [m/s]; 0 when the URDF gives none
    effort: float  # [Nm] or [N]; 0 when the URDF gives none
    mimic: tuple[str, float, float] | None  # (primary joint, multiplier, offset)

    @property
    def movable(self) -> bool:
        return self.type in MOVABLE_TYPES

    @property
    def continuous(self) -> bool:
        return self.type == "continuous"


@dataclass(frozen=True)
class Link:
    """A URDF link: its mass and the meshes its geometry names."""

    name: str
    mass: float  # [kg], 0 for links without an <inertial>
    meshes: tuple[str, ...]  # mesh URIs of its visual and collision geometry, as written


class RobotDescription:
    """The parsed URDF plus tree queries.

    Attributes:
        path: the URDF file.
        xml: its bytes.
        robot: yourdfpy's parse of it (visuals, collisions, inertials, materials).
        name: the robot's name.
        joints: every joint by name, in file order.
        links: every link by name, in file order.
        root: the one link that is no joint's child.
    """

    def __init__(self, path: Path | str, package_dirs: tuple[str, ...] = ()):
        self.path = Path(path)
        self.package_dirs = tuple(package_dirs)
        try:
            self.xml = self.path.read_bytes()
        except OSError as error:
            raise UrdfError(path, f"cannot read the URDF ({error.strerror})") from error
        try:  # strictly well-formed first: yourdfpy would recover a truncated file silently
            root = ElementTree.fromstring(self.xml)
        except ElementTree.ParseError as error:
            raise UrdfError(path, f"not a readable URDF: XML error: {error}") from error
        if root.tag != "robot":
            raise UrdfError(path, f"not a readable URDF: the top element is <{root.tag}>, not <robot>")
        try:
            urdf = yourdfpy.URDF.load(
                io.BytesIO(self.xml), load_meshes=False, build_scene_graph=False,
                build_collision_scene_graph=False, load_collision_meshes=False,
            )
        except Exception as error:
            raise UrdfError(path, f"not a readable URDF: {type(error).__name__}: {error}") from error
        if not urdf.validate():
            raise UrdfError(path, "; ".join(str(e) for e in urdf.errors))
        robot = urdf.robot
        self.robot = robot  # yourdfpy's parse, for consumers that need geometry (the simulator)
        self.name = robot.name
        self.links = {link.name: _link(link) for link in robot.links}
        self.joints: dict[str, Joint] = {}
        for joint in robot.joints:
            if joint.name in self.joints:
                raise UrdfError(path, f"joint {joint.name!r} is defined twice")
            self.joints[joint.name] = _joint(joint)
        self._check_tree()
        self.root = next(iter(set(self.links) - {j.child for j in self.joints.values()}))
        self._children: dict[str, list[Joint]] = {name: [] for name in self.links}
        for joint in self.joints.values():
            self._children[joint.parent].append(joint)

    def _check_tree(self) -> None:
        for joint in self.joints.values():
            for role, link in (("parent", joint.parent), ("child", joint.child)):
                if link not in self.links:
                    raise UrdfError(self.path, f"joint {joint.name!r} names {role} link {link!r}, which is not defined")
            if joint.type in ("revolute", "prismatic") and not joint.lower <= joint.upper:
                raise UrdfError(self.path,
                                f"joint {joint.name!r} has lower limit {joint.lower} above upper {joint.upper}")
            if joint.movable and not np.linalg.norm(joint.axis) > 0:
                raise UrdfError(self.path, f"joint {joint.name!r} has a zero-length axis")
            if joint.mimic and not (joint.mimic[0] in self.joints and self.joints[joint.mimic[0]].movable):
                raise UrdfError(self.path,
                                f"joint {joint.name!r} mimics {joint.mimic[0]!r}, which is not a movable joint")
        children = [j.child for j in self.joints.values()]
        twice = sorted({c for c in children if children.count(c) > 1})
        if twice:
            raise UrdfError(self.path, f"links {twice} are the child of more than one joint")
        roots = sorted(set(self.links) - set(children))
        if len(roots) != 1:
            raise UrdfError(self.path, f"a URDF needs exactly one root link, found {roots or 'none (a cycle)'}")

    @property
    def movable_joints(self) -> list[Joint]:
        """Revolute, continuous and prismatic joints, in file order (mimic joints included)."""
        return [j for j in self.joints.values() if j.movable]

    def child_joints(self, link: str) -> list[Joint]:
        return self._children[link]

    def parent_joint(self, link: str) -> Joint | None:
        return next((j for j in self.joints.values() if j.child == link), None)

    def chain_to_root(self, link: str) -> list[Joint]:
        """Joints from the root down to `link`, root first."""
        chain = []
        joint = self.parent_joint(link)
        while joint is not None:
            chain.append(joint)
            joint = self.parent_joint(joint.parent)
        return chain[::-1]

    def subtree_links(self, link: str) -> list[str]:
        """`link` and every link below it."""
        found, stack = [], [link]
        while stack:
            name = stack.pop()
            found.append(name)
            stack.extend(j.child for j in self._children[name])
        return found

    def resolve_uri(self, uri: str) -> Path | None:
        """The file a mesh URI points to, or None when nothing matches.

        package://PKG/REST is looked up in `package_dirs` (each either PKG's directory or one
        holding it), in share/PKG of each AMENT_PREFIX_PATH entry, in ROS_PACKAGE_PATH, and in the
        URDF's ancestor directories named PKG; relative paths are relative to the URDF.
        """
        if uri.startswith("package://"):
            # Some URDFs write package:///pkg/...: read it as package://pkg/... like most tools do.
            package, _, rest = uri[len("package://"):].lstrip("/").partition("/")
            for candidate in self._package_candidates(package):
                if (candidate / rest).is_file():
                    return candidate / rest
            return None
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        path = path if path.is_absolute() else self.path.parent / path
        return path if path.is_file() else None

    def _package_candidates(self, package: str) -> list[Path]:
        candidates = []
        for directory in map(Path, self.package_dirs):
            candidates += [directory, directory / package]
        for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
            candidates.append(Path(prefix) / "share" / package)
        for entry in filter(None, os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep)):
            candidates += [Path(entry), Path(entry) / package]
        candidates += [a for a in self.path.resolve().parents if a.name == package]
        return candidates

    def unresolved_meshes(self) -> list[tuple[str, str]]:
        """(link, uri) of every mesh that resolve_uri() cannot find."""
        return [
            (link.name, uri)
            for link in self.links.values()
            for uri in link.meshes
            if self.resolve_uri(uri) is None
        ]


def _link(link: yourdfpy.Link) -> Link:
    mass = float(link.inertial.mass) if link.inertial is not None and link.inertial.mass else 0.0
    meshes = tuple(
        geometry.geometry.mesh.filename
        for geometry in [*link.visuals, *link.collisions]
        if geometry.geometry is not None and geometry.geometry.mesh is not None
    )
    return Link(link.name, mass, meshes)


def _joint(joint: yourdfpy.Joint) -> Joint:
    limit = joint.limit
    limited = joint.type in ("revolute", "prismatic")

    def value(attribute: str, default: float) -> float:
        found = getattr(limit, attribute, None) if limit is not None else None
        return float(found) if found is not None else default

    axis = np.asarray(joint.axis if joint.axis is not None else (1.0, 0.0, 0.0), dtype=float)
    norm = np.linalg.norm(axis)
    return Joint(
        name=joint.name,
        type=joint.type,
        parent=joint.parent,
        child=joint.child,
        origin=np.asarray(joint.origin if joint.origin is not None else np.eye(4), dtype=float),
        axis=axis / norm if norm > 0 else axis,
        lower=value("lower", 0.0) if limited else -np.inf,
        upper=value("upper", 0.0) if limited else np.inf,
        velocity=value("velocity", 0.0),
        effort=value("effort", 0.0),
        mimic=_mimic(joint.mimic),
    )


def _mimic(mimic: yourdfpy.Mimic | None) -> tuple[str, float, float] | None:
    if mimic is None:
        return None
    multiplier = float(mimic.multiplier) if mimic.multiplier is not None else 1.0
    return mimic.joint, multiplier, float(mimic.offset) if mimic.offset is not None else 0.0
