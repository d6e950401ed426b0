"""The node graph for an embodiment: which executables, under which names, with which parameters.

One description, two starters: the launch files turn each NodeSpec into a launch_ros `Node`
action, and `vla-ros up` into a child process (`NodeSpec.argv`). Nothing about the graph is
written anywhere else. No ROS imports here: the graph is plain data, testable anywhere.

The graph (docs/architecture.md, "Topics and messages"): policy_node (cameras + joint_states + instruction ->
vla/action_chunk) and controller_node (chunks + joint_states -> <group>_controller/commands),
plus sim_node (the robot in MuJoCo) with `sim`, recorder_node with `record`, and teleop_node
(a person takes over with a gamepad or a leader arm) with `teleop`. Every topic is
relative, so a namespace moves the whole graph.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field

import yaml

from vla_ros.control.teleop import INPUTS as TELEOP_INPUTS
from vla_ros.errors import VlaRosError, did_you_mean
from vla_ros.policy.registry import parse_params


@dataclass(frozen=True)
class Argument:
    """A launch argument (the same names as `vla-ros up` options)."""

    name: str
    default: str
    description: str


def arguments(sim_time: bool, sim: bool = False) -> list[Argument]:
    """The launch arguments; `use_sim_time` defaults to `sim_time`; `lockstep` with the embedded `sim`."""
    lockstep = [Argument("lockstep", "false", "evaluation mode of the embedded sim (needs use_sim_time): it steps only "
                         "once the controller has commanded, and waits at each observation for policy_node")]
    return [
        Argument("embodiment", "arm7", "shipped embodiment name (arm7, mobile_manipulator, humanoid_upper, ur5e) "
                 "or the path of an embodiment config"),
        Argument("policy", "builtin", "policy_node backend: builtin, hold, replay, remote, lerobot"),
        Argument("checkpoint", "", "checkpoint directory of the builtin backend (empty: the shipped one)"),
        Argument("policy_params", "", "backend parameters as a YAML mapping, e.g. \"{url: 'ws://host:8000'}\""),
        Argument("namespace", "", "namespace for every node and topic (empty: none)"),
        Argument("use_sim_time", "true" if sim_time else "false", "follow /clock instead of the wall clock"),
        Argument("record", "false", "also start recorder_node"),
        Argument("teleop", "", "also start teleop_node with this input: joy (sensor_msgs/Joy on joy) or leader "
                 "(a leader arm on leader/joint_states); empty: none"),
        *(lockstep if sim else []),
    ]


def options_from_arguments(value, sim: bool) -> Options:
    """Options from launch argument values (`value(name)` -> str), as the launch files read them."""
    return Options(embodiment=value("embodiment"), sim=sim, policy=value("policy"), checkpoint=value("checkpoint"),
                   policy_params=parse_params(value("policy_params")), namespace=value("namespace"),
                   use_sim_time=parse_bool(value("use_sim_time"), "use_sim_time"),
                   record=parse_bool(value("record"), "record"), teleop=value("teleop"),
                   lockstep=sim and parse_bool(value("lockstep"), "lockstep"))


def launch_description(sim: bool, sim_time: bool = False, extra=None):
    """The LaunchDescription of the launch files (launch_ros, on a ROS install).

    The graph() nodes with `sim` (sim_node) or not, use_sim_time defaulting to `sim_time`, and the
    actions `extra(context, options)` builds at launch time (gazebo.launch.py: gz sim, spawners, the
    bridge) before them.
    """
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def nodes(context):
        options = options_from_arguments(lambda name: LaunchConfiguration(name).perform(context), sim)
        actions = list(extra(context, options)) if extra is not None else []
        return actions + [Node(package="vla_ros", executable=spec.executable, name=spec.name,
                               namespace=spec.namespace, parameters=[spec.parameters],
                               remappings=list(spec.remappings), output="screen") for spec in graph(options)]

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in arguments(sim_time, sim)]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: `ros2 run vla_ros <executable>` as `<namespace>/<name>` with `parameters`."""

    executable: str
    name: str
    namespace: str
    parameters: dict[str, bool | int | float | str]
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_args(self) -> list[str]:
        """The node's --ros-args: name, namespace, parameters and remappings on the command line."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={parameter_text(value)}"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        return args

    def argv(self) -> list[str]:
        """The command that runs the node in this Python (what `ros2 run` would start)."""
        return [sys.executable, "-m", f"vla_ros.nodes.{self.executable}", *self.ros_args()]


@dataclass(frozen=True)
class Options:
    """What a user chooses when starting the graph (launch arguments, `vla-ros up` flags).

    Attributes:
        embodiment: a shipped embodiment name or a config file path.
        sim: start sim_node (the embedded MuJoCo robot) too.
        policy: policy_node's backend (builtin, hold, replay, remote, lerobot).
        checkpoint: the builtin backend's checkpoint ("" = the shipped one).
        policy_params: backend parameters (policy_node `policy_params`, a YAML mapping).
        namespace: every node (and so every topic) under it; "" = none.
        use_sim_time: follow /clock. The launch files with a simulator and `vla-ros up --sim` turn
            it on; off, sim_node runs in real time and stamps with the wall clock.
        record: start recorder_node too.
        record_dir: its out_dir ("" = its default, episodes/ where the graph starts).
        teleop: start teleop_node with this input (joy, leader); "" = none.
        task, seed, phrasing: the sim's task spec, seed and instruction wording (with `sim`).
        lockstep: the sim steps only once the controller has commanded and waits at each
            observation for policy_node (with `sim` and `use_sim_time`; evaluation).
    """

    embodiment: str
    sim: bool = False
    policy: str = "builtin"
    checkpoint: str = ""
    policy_params: dict[str, object] = field(default_factory=dict)
    namespace: str = ""
    use_sim_time: bool = False
    record: bool = False
    record_dir: str = ""
    teleop: str = ""
    task: str = "reach"
    seed: int = 0
    phrasing: str = "canonical"
    lockstep: bool = False


def graph(options: Options) -> list[NodeSpec]:
    """The nodes to start, in start order (the robot first, the policy last)."""
    if not options.embodiment:
        raise VlaRosError("no embodiment given (a shipped name such as arm7, or a config file)")
    namespace = normalize_namespace(options.namespace)
    if options.lockstep and not (options.sim and options.use_sim_time):
        raise VlaRosError("lockstep is a mode of the embedded sim on sim time: it needs sim and use_sim_time")
    common = {"embodiment": options.embodiment, "use_sim_time": bool(options.use_sim_time)}
    lockstep = {"lockstep": True} if options.lockstep else {}
    nodes = []
    if options.sim:
        nodes.append(NodeSpec("sim_node", "sim_node", namespace,
                              {**common, "task": options.task, "seed": int(options.seed), "phrasing": options.phrasing,
                               "publish_cameras": True, **lockstep}))
    nodes.append(NodeSpec("controller_node", "controller_node", namespace, {**common, **lockstep}))
    policy = {**common, "policy": options.policy, **lockstep}
    if options.checkpoint:
        policy["checkpoint"] = options.checkpoint
    if options.policy_params:
        policy["policy_params"] = yaml.safe_dump(dict(options.policy_params), default_flow_style=True,
                                                 width=math.inf).strip()
    nodes.append(NodeSpec("policy_node", "policy_node", namespace, policy))
    if options.record:
        recorder = {**common, **({"out_dir": options.record_dir} if options.record_dir else {})}
        nodes.append(NodeSpec("recorder_node", "recorder_node", namespace, recorder))
    if options.teleop:
        if options.teleop not in TELEOP_INPUTS:
            raise VlaRosError(f"teleop {options.teleop!r}: use one of {', '.join(TELEOP_INPUTS)} (or none)"
                              f"{did_you_mean(options.teleop, TELEOP_INPUTS)}")
        nodes.append(NodeSpec("teleop_node", "teleop_node", namespace, {**common, "input": options.teleop}))
    return nodes


def gazebo_actions(context, options: Options) -> list:
    """gazebo.launch.py's actions besides our nodes (launch_ros with ros_gz and gz_ros2_control).

    Export the embodiment for ros2_control into a fresh directory, start gz sim with
    config/gz_world.sdf, publish the exported URDF (robot_state_publisher), spawn it (ros_gz_sim
    create), start the joint_state_broadcaster and each group's forward command controller
    (controller_manager spawner) and bridge /clock and the cameras (ros_gz_bridge).
    """
    import tempfile
    from pathlib import Path

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    from vla_ros.embodiment import load_embodiment
    from vla_ros.embodiment.ros2_control import controller_name, export

    embodiment = load_embodiment(options.embodiment)
    written = export(embodiment, Path(tempfile.mkdtemp(prefix=f"vla_ros_{embodiment.name}_ros2_control_")))
    namespace = normalize_namespace(options.namespace)
    world = Path(get_package_share_directory("vla_ros")) / "config" / "gz_world.sdf"
    gz_launch = Path(get_package_share_directory("ros_gz_sim")) / "launch" / "gz_sim.launch.py"
    controllers = ["joint_state_broadcaster", *(controller_name(g) for g in embodiment.commanded_groups)]
    sim_time = {"use_sim_time": True}
    return [
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(gz_launch)),
                                 launch_arguments={"gz_args": f"-r {world}"}.items()),
        Node(package="robot_state_publisher", executable="robot_state_publisher", namespace=namespace,
             parameters=[{"robot_description": written.gazebo_urdf.read_text(), **sim_time}], output="screen"),
        Node(package="ros_gz_sim", executable="create", namespace=namespace, output="screen",
             arguments=["-topic", "robot_description", "-name", embodiment.name]),
        Node(package="controller_manager", executable="spawner", namespace=namespace, output="screen",
             arguments=[*controllers, "--controller-manager", "controller_manager"]),
        Node(package="ros_gz_bridge", executable="parameter_bridge", namespace=namespace, output="screen",
             parameters=[{"config_file": str(written.bridge), **sim_time}]),
    ]


def normalize_namespace(namespace: str) -> str:
    """'' or '/name[/name...]'; a clear error for what ROS would refuse."""
    namespace = namespace.strip().strip("/")
    if not namespace:
        return ""
    for part in namespace.split("/"):
        if not part or not (part[0].isalpha() or part[0] == "_") or not all(c.isalnum() or c == "_" for c in part):
            raise VlaRosError(f"namespace {namespace!r}: each part must start with a letter or _ and hold only "
                              "letters, digits and _")
    return "/" + namespace


def parameter_text(value: bool | int | float | str) -> str:
    """A parameter value as `-p name:=VALUE` reads it (YAML): strings quoted, so '1' stays a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def parse_bool(text: str | bool, name: str) -> bool:
    """A launch argument's true/false (as launch substitutions hand them over: strings)."""
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise VlaRosError(f"{name} must be true or false, got {text!r}")
