"""Robots from URDF: joints, limits, groups, kinematics and the policy's action layout (no ROS)."""
from vla_ros.embodiment.config import EmbodimentError
from vla_ros.embodiment.embodiment import BaseGroup, Camera, Embodiment, JointGroup, load_embodiment
from vla_ros.embodiment.layout import ActionLayout, LayoutError, Normalizer
from vla_ros.embodiment.urdf import RobotDescription, UrdfError

__all__ = [
    "ActionLayout", "BaseGroup", "Camera", "Embodiment", "EmbodimentError", "JointGroup", "LayoutError",
    "Normalizer", "RobotDescription", "UrdfError", "load_embodiment",
]
