"""A robot description turned into MuJoCo bodies, joints, geoms and equality constraints.

Built directly into an MjSpec from the parsed URDF (not through MuJoCo's URDF importer), so that
visual geometry, materials and every link frame survive: one body per link, visual geoms rendered
and never colliding, collision geoms colliding and hidden, mimic joints as joint equalities, and
meshes in any format trimesh reads (STL, OBJ, DAE, ...) passed to MuJoCo as vertices and faces.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mujoco
import numpy as np
import trimesh
from transforms3d.quaternions import mat2quat

from vla_ros.embodiment.urdf import RobotDescription, UrdfError

VISUAL_GROUP = 0  # rendered by default
COLLISION_GROUP = 3  # hidden by default
ROBOT_CONTYPE = 2  # robot collision geoms collide with what has bit 2 in conaffinity (objects, table)
DEFAULT_RGBA = (0.7, 0.7, 0.72, 1.0)
DEFAULT_ARMATURE = 0.01  # [kg m^2 | kg] for joints no group gives one (mimic fingers, wheels)
MIN_MASS = 1e-3  # [kg] given to massless links that move, which MuJoCo cannot simulate


@dataclass(frozen=True)
class MeshPart:
    """One part of a mesh file: its triangles and, if the file has one, its colour."""

    vertices: np.ndarray  # (N, 3) [m], in the mesh file's frame, scaled
    faces: np.ndarray  # (M, 3) vertex indices
    rgba: tuple[float, float, float, float] | None  # the part's own colour, if the file has one


@lru_cache(maxsize=256)
def load_mesh(path: Path, scale: tuple[float, float, float]) -> tuple[MeshPart, ...]:
    """The parts of a mesh file (one per material in a scene file), with their colours."""
    try:
        loaded = trimesh.load(path, force="scene", process=False)
    except Exception as error:
        raise UrdfError(path, f"cannot read mesh: {type(error).__name__}: {error}") from error
    parts = []
    for node in loaded.graph.nodes_geometry:
        transform, name = loaded.graph[node]
        mesh = loaded.geometry[name]
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        vertices = _solid(trimesh.transform_points(mesh.vertices, transform) * np.asarray(scale))
        parts.append(MeshPart(vertices, np.asarray(mesh.faces, dtype=np.int32), _color(mesh)))
    if not parts:
        raise UrdfError(path, "mesh file has no triangles")
    return tuple(parts)


FLAT_THICKNESS = 1e-4  # [m] given to flat mesh parts (decals, labels)


def _solid(vertices: np.ndarray) -> np.ndarray:
    """(N, 3) vertices, with a copy FLAT_THICKNESS behind them when they all lie in one plane.

    MuJoCo builds every mesh's convex hull and refuses a flat one; the copies are referenced by no
    face, so what is drawn does not change.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    centred = vertices - vertices.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    if len(vertices) >= 3 and singular[-1] > 1e-9 * max(singular[0], 1e-12):
        return vertices
    return np.vstack([vertices, vertices + FLAT_THICKNESS * axes[-1]])


def _color(mesh: trimesh.Trimesh) -> tuple[float, float, float, float] | None:
    visual = mesh.visual
    material = getattr(visual, "material", None)
    diffuse = getattr(material, "diffuse", None) if material is not None else None
    if diffuse is None and visual.kind == "face":
        diffuse = np.asarray(visual.face_colors).mean(axis=0)
    if diffuse is None:
        return None
    rgba = np.asarray(diffuse, dtype=float)[:4] / 255.0
    return tuple(rgba.tolist()) if rgba.shape == (4,) else None


def _physical(tensor: np.ndarray) -> np.ndarray:
    """An inertia tensor MuJoCo accepts: positive principal moments obeying the triangle inequality.

    Vendor URDFs carry zero or inconsistent inertias for small links; the principal moments are
    raised just enough, the principal axes kept.
    """
    moments, axes = np.linalg.eigh((tensor + tensor.T) / 2)
    moments = np.maximum(moments, 1e-7)
    moments[2] = min(moments[2], moments[0] + moments[1])  # eigh sorts: only the largest can break it
    return axes @ np.diag(moments) @ axes.T


def _empty(geometry) -> bool:
    """A box, cylinder or sphere with a zero size (no volume)."""
    sizes = ([*geometry.box.size] if geometry.box is not None else
             [geometry.cylinder.radius, geometry.cylinder.length] if geometry.cylinder is not None else
             [geometry.sphere.radius] if geometry.sphere is not None else [1.0])
    return not all(float(size) > 0 for size in sizes)


def body_name(link: str) -> str:
    """The MuJoCo body of a URDF link: its own name, except a link called "world" (MuJoCo's)."""
    return "urdf_world" if link == "world" else link


def pose(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pos, quat w-x-y-z) of a 4x4 transform."""
    return matrix[:3, 3].copy(), mat2quat(matrix[:3, :3])


class RobotBuilder:
    """Adds one robot description to an MjSpec under a given parent body."""

    def __init__(self, spec: mujoco.MjSpec, description: RobotDescription, armature: dict[str, float]):
        """`armature`: reflected motor inertia per joint name [kg m^2 | kg]; DEFAULT_ARMATURE otherwise."""
        self.spec = spec
        self.description = description
        self.armature = armature
        self.materials = {m.name: m for m in description.robot.materials if m.name}
        self._mesh_count = 0

    def build(self, parent: mujoco.MjsBody, root_pos: np.ndarray, planar_base: bool) -> mujoco.MjsBody:
        """Add the tree below `parent`; returns the root link's body."""
        root = parent.add_body(name=body_name(self.description.root), pos=root_pos)
        if planar_base:
            for name, kind, axis in (("base_x", mujoco.mjtJoint.mjJNT_SLIDE, (1, 0, 0)),
                                     ("base_y", mujoco.mjtJoint.mjJNT_SLIDE, (0, 1, 0)),
                                     ("base_yaw", mujoco.mjtJoint.mjJNT_HINGE, (0, 0, 1))):
                root.add_joint(name=name, type=kind, axis=axis, armature=1.0)
        self._fill_link(root, self.description.root, moving=planar_base)
        self._add_children(root, self.description.root, moving=planar_base)
        for joint in self.description.movable_joints:
            if joint.mimic is not None:
                primary, multiplier, offset = joint.mimic
                self.spec.add_equality(
                    type=mujoco.mjtEq.mjEQ_JOINT, name1=joint.name, name2=primary,
                    data=[offset, multiplier] + [0.0] * 10,
                )
        return root

    def _add_children(self, body: mujoco.MjsBody, link: str, moving: bool) -> None:
        for joint in self.description.child_joints(link):
            pos, quat = pose(joint.origin)
            child = body.add_body(name=body_name(joint.child), pos=pos, quat=quat)
            urdf_joint = next(j for j in self.description.robot.joints if j.name == joint.name)
            dynamics = urdf_joint.dynamics
            if joint.type in ("revolute", "continuous", "prismatic"):
                limited = joint.type != "continuous" and joint.lower < joint.upper
                child.add_joint(
                    name=joint.name,
                    type=mujoco.mjtJoint.mjJNT_SLIDE if joint.type == "prismatic" else mujoco.mjtJoint.mjJNT_HINGE,
                    axis=joint.axis,
                    # lower == upper: a <limit> without lower/upper (0 by the spec), meant as unlimited;
                    # MuJoCo has no empty range, and the controller holds the joint inside it anyway.
                    range=[joint.lower, joint.upper] if limited else [0, 0],
                    limited=mujoco.mjtLimited.mjLIMITED_TRUE if limited else mujoco.mjtLimited.mjLIMITED_FALSE,
                    damping=float(dynamics.damping or 0.0) if dynamics is not None else 0.0,
                    frictionloss=float(dynamics.friction or 0.0) if dynamics is not None else 0.0,
                    armature=self.armature.get(joint.name, DEFAULT_ARMATURE),
                )
            elif joint.type != "fixed":
                raise UrdfError(self.description.path, f"joint {joint.name!r}: {joint.type} joints are not simulated")
            self._fill_link(child, joint.child, moving=moving or joint.movable)
            self._add_children(child, joint.child, moving=moving or joint.movable)

    def _fill_link(self, body: mujoco.MjsBody, link_name: str, moving: bool) -> None:
        link = next(candidate for candidate in self.description.robot.links if candidate.name == link_name)
        inertial = link.inertial
        if inertial is not None and inertial.mass:
            origin = inertial.origin if inertial.origin is not None else np.eye(4)
            inertia = inertial.inertia if inertial.inertia is not None else np.eye(3) * 1e-6
            rotation = origin[:3, :3]
            tensor = _physical(rotation @ np.asarray(inertia, dtype=float) @ rotation.T)
            body.mass = float(inertial.mass)
            body.ipos = origin[:3, 3]
            body.fullinertia = [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[0, 1], tensor[0, 2], tensor[1, 2]]
            body.explicitinertial = True
        elif moving:
            body.mass = MIN_MASS
            body.inertia = [1e-6, 1e-6, 1e-6]
            body.explicitinertial = True
        has_visual = bool(link.visuals)
        for visual in link.visuals:
            self._add_geometry(body, visual, visual=True, rgba=self._rgba(visual.material))
        for collision in link.collisions:
            self._add_geometry(body, collision, visual=False, rgba=DEFAULT_RGBA, shown=not has_visual)

    def _rgba(self, material) -> tuple[float, ...]:
        if material is None:
            return DEFAULT_RGBA
        if material.color is not None:
            return tuple(float(c) for c in material.color.rgba)
        named = self.materials.get(material.name)
        if named is not None and named.color is not None:
            return tuple(float(c) for c in named.color.rgba)
        return DEFAULT_RGBA

    def _add_geometry(self, body, element, visual: bool, rgba, shown: bool = False) -> None:
        geometry = element.geometry
        origin = element.origin if element.origin is not None else np.eye(4)
        pos, quat = pose(origin)
        settings = dict(
            pos=pos, quat=quat, rgba=rgba,
            contype=0 if visual else ROBOT_CONTYPE, conaffinity=0,
            group=VISUAL_GROUP if visual or shown else COLLISION_GROUP,
            mass=0.0,
        )
        if _empty(geometry):
            return  # vendors write <box size="0 0 0"/> for a link with nothing to show; MuJoCo refuses it
        if geometry.box is not None:
            body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=np.asarray(geometry.box.size) / 2, **settings)
        elif geometry.cylinder is not None:
            body.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                          size=[geometry.cylinder.radius, geometry.cylinder.length / 2, 0], **settings)
        elif geometry.sphere is not None:
            body.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[geometry.sphere.radius, 0, 0], **settings)
        elif geometry.mesh is not None:
            path = self.description.resolve_uri(geometry.mesh.filename)
            if path is None:
                raise UrdfError(self.description.path, f"mesh {geometry.mesh.filename!r} cannot be found")
            scale = tuple(np.broadcast_to(np.asarray(geometry.mesh.scale if geometry.mesh.scale is not None else 1.0,
                                                     dtype=float), (3,)).tolist())
            for part in load_mesh(path, scale):
                self._mesh_count += 1
                name = f"mesh{self._mesh_count}"
                # Bodies carry the URDF's inertials and geoms no mass, so a mesh's inertia is never
                # used; as a shell MuJoCo computes it even for the open or paper-thin meshes vendors
                # ship, which it refuses as solids ("mesh volume is too small").
                self.spec.add_mesh(name=name, uservert=part.vertices.ravel().tolist(),
                                   userface=part.faces.ravel().tolist(),
                                   inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL)
                part_settings = dict(settings)
                if visual and part.rgba is not None and element.material is None:
                    part_settings["rgba"] = part.rgba
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=name, **part_settings)
