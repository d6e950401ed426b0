"""Robots from URDF: joints, limits, groups, kinematics and the policy's action layout (no ROS)."""
from vla_ros.embodiment.config import EmbodimentError
from vla_ros.embodiment.embodiment import BaseGroup, Camera, Embodiment, JointGroup, load_embodiment
from vla_ros.embodiment.layout import ActionLayout, LayoutError
from vla_ros.embodiment.urdf import RobotDescription, UrdfError
from vla_ros.embodiment.vectors import EmbodimentIO

__all__ = [
    "ActionLayout", "BaseGroup", "Camera", "Embodiment", "EmbodimentError", "EmbodimentIO", "JointGroup", "LayoutError",
    "RobotDescription", "UrdfError", "load_embodiment",
]
