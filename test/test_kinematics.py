"""Kinematics and dynamics of the shipped robots against independent computations.

The reference here reads the URDF with ElementTree and chains transforms with transforms3d, so it
shares no code with yourdfpy or pinocchio.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from transforms3d.axangles import axangle2mat
from transforms3d.euler import euler2mat

from vla_ros.embodiment import load_embodiment
from vla_ros.embodiment.kinematics import Kinematics
from vla_ros.embodiment.urdf import RobotDescription

REPO = Path(__file__).resolve().parents[1]
GRAVITY = 9.81


def _floats(text, default):
    return np.array([float(v) for v in text.split()]) if text else np.array(default, dtype=float)


class ReferenceChain:
    """Forward kinematics straight from the URDF XML: origin (xyz, rpy) then the joint motion."""

    def __init__(self, urdf: Path):
        root = ET.parse(urdf).getroot()
        self.joints = {}
        for joint in root.findall("joint"):
            origin = joint.find("origin")
            transform = np.eye(4)
            if origin is not None:
                transform[:3, :3] = euler2mat(*_floats(origin.get("rpy"), [0, 0, 0]), axes="sxyz")
                transform[:3, 3] = _floats(origin.get("xyz"), [0, 0, 0])
            axis = joint.find("axis")
            mimic = joint.find("mimic")
            self.joints[joint.find("child").get("link")] = dict(
                name=joint.get("name"), type=joint.get("type"), parent=joint.find("parent").get("link"),
                origin=transform, axis=_floats(axis.get("xyz") if axis is not None else None, [1, 0, 0]),
                mimic=None if mimic is None else (mimic.get("joint"), float(mimic.get("multiplier", 1)),
                                                  float(mimic.get("offset", 0))),
            )
        self.inertials = {}
        for link in root.findall("link"):
            inertial = link.find("inertial")
            if inertial is not None:
                origin = inertial.find("origin")
                com = _floats(origin.get("xyz") if origin is not None else None, [0, 0, 0])
                self.inertials[link.get("name")] = (float(inertial.find("mass").get("value")), com)

    def pose(self, link: str, positions: dict) -> np.ndarray:
        if link not in self.joints:
            return np.eye(4)
        joint = self.joints[link]
        value = positions.get(joint["name"], 0.0)
        if joint["mimic"]:
            primary, multiplier, offset = joint["mimic"]
            value = multiplier * positions.get(primary, 0.0) + offset
        motion = np.eye(4)
        if joint["type"] in ("revolute", "continuous"):
            motion[:3, :3] = axangle2mat(joint["axis"], value)
        elif joint["type"] == "prismatic":
            motion[:3, 3] = joint["axis"] / np.linalg.norm(joint["axis"]) * value
        return self.pose(joint["parent"], positions) @ joint["origin"] @ motion

    def potential_energy(self, positions: dict) -> float:
        energy = 0.0
        for link, (mass, com) in self.inertials.items():
            height = (self.pose(link, positions) @ np.append(com, 1.0))[2]
            energy += mass * GRAVITY * height
        return energy


def random_positions(kinematics: Kinematics, description: RobotDescription, rng) -> np.ndarray:
    joints = [description.joints[name] for name in kinematics.joint_names]
    lower = np.array([j.lower if np.isfinite(j.lower) else -np.pi for j in joints])
    upper = np.array([j.upper if np.isfinite(j.upper) else np.pi for j in joints])
    return rng.uniform(lower, upper)


@pytest.mark.parametrize("name, frames", [
    ("arm7", ["tcp", "wrist_camera_link", "front_camera_link", "left_finger"]),
    ("mobile_manipulator", ["gripper_tcp", "head_camera_link", "wheel_rear_right"]),
    ("humanoid_upper", ["left_hand_tcp", "right_hand_tcp", "head_camera_link", "left_foot_link", "left_thumb_link"]),
])
def test_forward_kinematics_matches_chained_transforms(name, frames):
    """Pinocchio's frame poses equal ElementTree + transforms3d chaining to 1e-9 in random poses."""
    embodiment = load_embodiment(name)
    kinematics = embodiment.kinematics
    reference = ReferenceChain(embodiment.description.path)
    rng = np.random.default_rng(7)
    for _ in range(25):
        q = random_positions(kinematics, embodiment.description, rng)
        positions = dict(zip(kinematics.joint_names, q))
        for frame in frames:
            np.testing.assert_allclose(kinematics.frame_pose(q, frame), reference.pose(frame, positions), atol=1e-9)


def test_jacobian_matches_finite_differences_of_the_pose():
    """The linear rows of the tcp Jacobian equal central differences of its position."""
    embodiment = load_embodiment("arm7")
    kinematics = embodiment.kinematics
    q = np.array(embodiment.groups["arm"].home.tolist() + [0.02])
    jacobian = kinematics.frame_jacobian(q, "tcp")
    step = 1e-6
    for i in range(len(q)):
        dq = np.zeros_like(q)
        dq[i] = step
        numeric = (kinematics.frame_pose(q + dq, "tcp")[:3, 3] - kinematics.frame_pose(q - dq, "tcp")[:3,
                                                                                                      3]) / (2 * step)
        np.testing.assert_allclose(jacobian[:3, i], numeric, atol=1e-7)


@pytest.mark.parametrize("name", ["arm7", "mobile_manipulator", "humanoid_upper"])
def test_gravity_torques_are_the_gradient_of_potential_energy(name):
    """tau_g(q) = dV/dq with V summed from link masses and centres in the reference chain.

    Moving a primary joint moves its mimic followers too, so their load shows up in its torque.
    """
    embodiment = load_embodiment(name)
    kinematics = embodiment.kinematics
    reference = ReferenceChain(embodiment.description.path)
    rng = np.random.default_rng(3)
    q = random_positions(kinematics, embodiment.description, rng)
    step = 1e-6
    numeric = []
    for i, joint in enumerate(kinematics.joint_names):
        plus, minus = dict(zip(kinematics.joint_names, q)), dict(zip(kinematics.joint_names, q))
        plus[joint] += step
        minus[joint] -= step
        numeric.append((reference.potential_energy(plus) - reference.potential_energy(minus)) / (2 * step))
    np.testing.assert_allclose(kinematics.gravity(q), numeric, atol=1e-5)


def test_continuous_and_mimic_joints(tmp_path):
    """A continuous joint wraps through pinocchio's cos/sin encoding; a mimic joint follows its primary."""
    urdf = tmp_path / "wheel.urdf"
    urdf.write_text("""<robot name="wheel">
      <link name="base"/><link name="spin"/><link name="slave"/>
      <joint name="spin_joint" type="continuous"><parent link="base"/><child link="spin"/>
        <origin xyz="0.1 0 0" rpy="0 0 0.3"/><axis xyz="0 0 1"/></joint>
      <joint name="slave_joint" type="revolute"><parent link="spin"/><child link="slave"/>
        <origin xyz="0.2 0 0"/><axis xyz="0 1 0"/><limit lower="-3" upper="3" effort="1" velocity="1"/>
        <mimic joint="spin_joint" multiplier="-2" offset="0.1"/></joint>
    </robot>""")
    description = RobotDescription(urdf)
    kinematics = Kinematics(description)
    reference = ReferenceChain(urdf)
    assert kinematics.joint_names == ["spin_joint"]
    for angle in (0.0, 2.5, -3.1, 7.0):
        np.testing.assert_allclose(kinematics.frame_pose(np.array([angle]), "slave"),
                                   reference.pose("slave", {"spin_joint": angle}), atol=1e-12)
