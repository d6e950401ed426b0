"""A robot description read from a URDF: joints, limits, the kinematic tree, and its mesh files.

Parsing is yourdfpy's; on top of it this module checks the structure a controller relies on (one
root, every joint's links present, no joint named twice, limits on every limited joint, mimic
targets that exist) and resolves mesh URIs (package://, file://, relative, absolute). It reads
what MuJoCo and pinocchio read: a <limit> without lower/upper (0 by the URDF spec) and attributes
with a namespace prefix the file never declares (`drake:acceleration`) are accepted; a file that
still holds xacro substitutions is refused with the fix.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import yourdfpy

from vla_ros.errors import VlaRosError

MOVABLE_TYPES = ("revolute", "continuous", "prismatic")
# $(arg x), $(find pkg), $(optenv VAR default), ... and ${expression}: left in a file xacro never expanded.
XACRO_SUBSTITUTION = re.compile(rb"\$\((?:arg|find|env|optenv|eval|dirname|anon|cwd)\b[^)]*\)|\$\{[^}]*\}")
XML_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)
UNBOUND_PREFIX = re.compile(rb"\s([A-Za-z_][\w.-]*):[A-Za-z_][\w.-]*\s*=")
# yourdfpy insists on them; the URDF spec (and urdfdom, hence pinocchio) default them to 0.
OPTIONAL_LIMITS = ("Tag <limit> of joint is missing attribute 'upper'.",
                   "Tag <limit> of joint is missing attribute 'lower'.")


class UrdfError(VlaRosError):
    """A URDF that cannot be used, with the file, what is wrong in it, and the fix when one is known."""

    def __init__(self, path: Path | str, problem: str, fix: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}" + (f"\n  fix: {fix}" if fix else ""))


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
        path: the URDF file (for a xacro file, the .xacro: relative mesh paths start from its folder).
        xml: the URDF's bytes (for a xacro file, its expansion).
        robot: yourdfpy's parse of it (visuals, collisions, inertials, materials).
        name: the robot's name.
        joints: every joint by name, in file order.
        links: every link by name, in file order.
        root: the one link that is no joint's child.
    """

    def __init__(self, path: Path | str, package_dirs: tuple[str, ...] = (), xml: bytes | None = None):
        """Read the URDF at `path`, or parse `xml` as the URDF found there (an expanded xacro file)."""
        self.path = Path(path)
        self.package_dirs = tuple(package_dirs)
        if xml is None:
            try:
                xml = self.path.read_bytes()
            except OSError as error:
                raise UrdfError(path, f"cannot read the URDF ({error.strerror})") from error
        self.xml = xml
        substitution = XACRO_SUBSTITUTION.search(XML_COMMENT.sub(b"", self.xml))
        if substitution is not None:
            found = substitution.group().decode(errors="replace")
            raise UrdfError(path, f"holds the xacro substitution {found!r}: it is a xacro file, not a URDF",
                            f"expand it (`xacro {self.path.name} > robot.urdf`), or pass the .xacro file to "
                            "`vla-ros embodiment init`")
        try:  # strictly well-formed first: yourdfpy would recover a truncated file silently
            root = ElementTree.fromstring(self.xml)
        except ElementTree.ParseError as error:
            if "unbound prefix" not in str(error):
                raise UrdfError(path, f"not a readable URDF: XML error: {error}") from error
            self.xml = _declare_prefixes(self.xml)
            root = ElementTree.fromstring(self.xml)
        if root.tag != "robot":
            raise UrdfError(path, f"not a readable URDF: the top element is <{root.tag}>, not <robot>")
        try:
            urdf = yourdfpy.URDF.load(
                io.BytesIO(self.xml), load_meshes=False, build_scene_graph=False,
                build_collision_scene_graph=False, load_collision_meshes=False,
            )
        except Exception as error:
            raise UrdfError(path, f"not a readable URDF: {type(error).__name__}: {error}") from error
        if not urdf.validate(lambda errors: not _fatal(errors)):
            raise UrdfError(path, "; ".join(map(str, _fatal(urdf.errors))))
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

        package://PKG/REST is looked up where `package_candidates` says; a relative path from the
        URDF's folder, then from its parents (a xacro file in robot/xacro/ naming ./meshes/x.stl
        that lives in robot/meshes/, where the URDF it expands to is meant to be written).
        """
        found = self.resolve_package_uri(uri)
        if found is not None:
            return found[1]
        if uri.startswith("package://"):
            return None
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        if path.is_absolute():
            return path if path.is_file() else None
        folder = self.path.resolve().parent
        return next((f / path for f in (folder, *folder.parents) if (f / path).is_file()), None)

    def resolve_package_uri(self, uri: str) -> tuple[Path, Path] | None:
        """(the directory standing for PKG, the file) of a package://PKG/REST URI, or None."""
        if not uri.startswith("package://"):
            return None
        # Some URDFs write package:///pkg/...: read it as package://pkg/... like most tools do.
        package, _, rest = uri[len("package://"):].lstrip("/").partition("/")
        for candidate in package_candidates(package, self.path, self.package_dirs):
            if (candidate / rest).is_file():
                return candidate, candidate / rest
        return None

    def unresolved_meshes(self) -> list[tuple[str, str]]:
        """(link, uri) of every mesh that resolve_uri() cannot find."""
        return [
            (link.name, uri)
            for link in self.links.values()
            for uri in link.meshes
            if self.resolve_uri(uri) is None
        ]


def package_candidates(package: str, source: Path, package_dirs: tuple[str, ...] = ()) -> list[Path]:
    """Directories that may stand for ROS package `package`, for a description read from `source`.

    In order: `package_dirs` (each either the package's directory or one holding it), share/PKG
    of each AMENT_PREFIX_PATH entry, ROS_PACKAGE_PATH entries (the package or one holding it),
    then the source file's folder and its parents: one named PKG, one holding a PKG folder, and
    the folder itself (package://PKG/meshes/x.stl for a meshes/ folder beside the URDF or above
    it, as model folders copied out of their package are laid out).
    """
    candidates = []
    for directory in map(Path, package_dirs):
        candidates += [directory, directory / package]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / package)
    for entry in filter(None, os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep)):
        candidates += [Path(entry), Path(entry) / package]
    ancestors = Path(source).resolve().parents
    candidates += [a for a in ancestors if a.name == package]
    candidates += [a / package for a in ancestors]
    candidates += list(ancestors)
    return candidates


def package_directory(package: str, source: Path, package_dirs: tuple[str, ...] = ()) -> Path | None:
    """The directory of ROS package `package` (as xacro's $(find PKG) means it), or None.

    Looked up like package:// URIs (`package_candidates`), except that a folder only counts when it
    is named PKG or is share/PKG of an install.
    """
    for candidate in package_candidates(package, source, package_dirs):
        if candidate.name == package and candidate.is_dir():
            return candidate
    return None


def _fatal(errors: list) -> list:
    """The validation errors of yourdfpy, except those MuJoCo and pinocchio accept."""
    return [e for e in errors if not any(optional in str(e) for optional in OPTIONAL_LIMITS)]


def _declare_prefixes(xml: bytes) -> bytes:
    """`xml` with a namespace declared on its root for each attribute prefix it uses but never declares."""
    declared = set(re.findall(rb"xmlns:([\w.-]+)\s*=", xml))
    missing = sorted(set(UNBOUND_PREFIX.findall(xml)) - declared - {b"xmlns", b"xml"})
    declarations = b"".join(b' xmlns:%s="urn:vla_ros:undeclared:%s"' % (p, p) for p in missing)
    return re.sub(rb"<robot\b", b"<robot" + declarations, xml, count=1)


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
