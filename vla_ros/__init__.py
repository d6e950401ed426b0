"""vla_ros: Vision-Language-Action policies in charge of ROS 2 robots.

The cores (embodiment, control, policy, model, data, sim) never import rclpy; the nodes in
`vla_ros.nodes` are thin wiring between ROS topics and those cores.
"""
import os

__version__ = "0.1.0"

# MuJoCo picks its GL backend when it is first imported: render headless (EGL on the CPU's Mesa)
# unless the user chose otherwise. Set here, so it holds for every module of the package.
os.environ.setdefault("MUJOCO_GL", "egl")
