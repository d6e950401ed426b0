"""The node graph (vla_ros.bringup), the launch files that declare it, and `vla-ros up` that runs it."""
import dataclasses
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
import yourdfpy

from harness import console_script
from vla_ros.bringup import Options, arguments, graph, parameter_text
from vla_ros.embodiment import load_embodiment
from vla_ros.embodiment.ros2_control import controller_name
from vla_ros.errors import VlaRosError
from vla_ros.policy import parse_params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["arm7", "mobile_manipulator", "humanoid_upper"]


def test_the_graph_is_the_robot_the_controller_and_the_policy_with_the_options_passed_down():
    nodes = graph(Options("arm7", sim=True, policy="remote", policy_params={"url": "ws://robot:8000", "timeout_s": 1.0},
                          namespace="lab/left", use_sim_time=True, task="reach:red", seed=7))
    assert [n.executable for n in nodes] == ["sim_node", "controller_node", "policy_node"]
    assert {n.namespace for n in nodes} == {"/lab/left"}
    assert all(n.parameters["embodiment"] == "arm7" and n.parameters["use_sim_time"] is True for n in nodes)
    sim, _, policy = nodes
    assert sim.parameters["task"] == "reach:red" and sim.parameters["seed"] == 7
    assert policy.parameters["policy"] == "remote" and "checkpoint" not in policy.parameters
    assert parse_params(policy.parameters["policy_params"]) == {"url": "ws://robot:8000", "timeout_s": 1.0}
    robot = graph(Options("humanoid_upper", policy="hold", record=True))
    assert [n.executable for n in robot] == ["controller_node", "policy_node", "recorder_node"]
    assert all(n.parameters["use_sim_time"] is False and n.namespace == "" for n in robot)
    assert graph(Options("arm7", sim=True))[0].parameters["use_sim_time"] is False, "the wall clock unless asked"
    teleop = graph(Options("arm7", teleop="leader"))[-1]
    assert teleop.executable == "teleop_node" and teleop.parameters["input"] == "leader"
    with pytest.raises(VlaRosError, match="teleop 'jyo': use one of joy, leader.*did you mean 'joy'"):
        graph(Options("arm7", teleop="jyo"))
    lockstep = graph(Options("arm7", sim=True, use_sim_time=True, lockstep=True))
    assert all(n.parameters["lockstep"] is True for n in lockstep), "the sim, the controller and the policy"
    with pytest.raises(VlaRosError, match="lockstep .* needs sim and use_sim_time"):
        graph(Options("arm7", sim=True, lockstep=True))


def test_parameters_reach_the_command_line_as_the_types_they_are():
    node = graph(Options("arm7", checkpoint="models/0001", namespace="/r1/"))[1]
    args = node.argv()
    assert args[:3] == [sys.executable, "-m", "vla_ros.nodes.policy_node"]
    assert ["-r", "__node:=policy_node"] == args[4:6] and ["-r", "__ns:=/r1"] == args[6:8]
    assert 'checkpoint:="models/0001"' in args, "a string that looks like a number stays a string"
    assert parameter_text(True) == "true" and parameter_text(3) == "3" and parameter_text(0.5) == "0.5"


@pytest.mark.parametrize("namespace", ["9lives", "a b", "robot//x", "a-b"])
def test_a_namespace_ros_would_refuse_is_a_clear_error(namespace):
    with pytest.raises(VlaRosError, match="each part must start with a letter"):
        graph(Options("arm7", namespace=namespace))


class FakeLaunch:
    """Stand-in for `launch` and `launch_ros` (not installable here: no ROS 2 install on this machine).

    Records what the launch file declares and builds, the way launch_ros would: arguments with
    defaults, then the OpaqueFunction evaluated with the argument values of the launch command.
    """

    def __init__(self):
        self.modules = {}
        fake = self

        class LaunchDescription:
            def __init__(self, entities):
                self.entities = list(entities)

        class DeclareLaunchArgument:
            def __init__(self, name, default_value=None, description=""):
                self.name, self.default_value, self.description = name, default_value, description

        class OpaqueFunction:
            def __init__(self, function, args=None, kwargs=None):
                self.function = function

        class LaunchConfiguration:
            def __init__(self, name):
                self.name = name

            def perform(self, context):
                return context[self.name]

        class Node:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        fake.Node = Node
        class IncludeLaunchDescription:
            def __init__(self, source, launch_arguments=()):
                self.source, self.launch_arguments = source, dict(launch_arguments)

        class PythonLaunchDescriptionSource:
            def __init__(self, path):
                self.path = path

        fake.Include = IncludeLaunchDescription
        for module, names in {"launch": {"LaunchDescription": LaunchDescription},
                              "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument,
                                                 "OpaqueFunction": OpaqueFunction,
                                                 "IncludeLaunchDescription": IncludeLaunchDescription},
                              "launch.launch_description_sources": {
                                  "PythonLaunchDescriptionSource": PythonLaunchDescriptionSource},
                              "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
                              "launch_ros": {}, "launch_ros.actions": {"Node": Node},
                              "ament_index_python": {},
                              "ament_index_python.packages": {
                                  "get_package_share_directory": lambda package: f"/opt/ros/share/{package}"}}.items():
            self.modules[module] = types.ModuleType(module)
            self.modules[module].__dict__.update(names)

    def run(self, path: Path, overrides: dict[str, str]) -> tuple[dict, list]:
        """(declared arguments name -> (default, description), the Node actions' keyword arguments).

        `self.included` gets the included launch files.
        """
        with pytest.MonkeyPatch.context() as patch:
            for name, module in self.modules.items():
                patch.setitem(sys.modules, name, module)
            description = runpy.run_path(str(path))["generate_launch_description"]()
        declared = {e.name: (e.default_value, e.description) for e in description.entities if hasattr(e,
                                                                                                      "default_value")}
        context = {name: overrides.get(name, default) for name, (default, _) in declared.items()}
        with pytest.MonkeyPatch.context() as patch:
            for name, module in self.modules.items():
                patch.setitem(sys.modules, name, module)
            actions = [a for e in description.entities if hasattr(e, "function") for a in e.function(context)]
        self.included = [a for a in actions if isinstance(a, self.Include)]
        return declared, [a.kwargs for a in actions if isinstance(a, self.Node)]


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("launch_file, sim", [("bringup.launch.py", False), ("sim.launch.py", True)])
def test_the_launch_files_declare_the_graph_vla_ros_up_starts(name, launch_file, sim):
    """Every launch argument has a description and a default; the nodes are graph()'s.

    Same names, namespaces and parameters as `vla-ros up` puts on their command lines.
    """
    overrides = {"embodiment": name, "namespace": "cell1", "policy": "hold", "teleop": "joy"}
    declared, nodes = FakeLaunch().run(ROOT / "launch" / launch_file, overrides)
    assert declared == {a.name: (a.default, a.description) for a in arguments(sim, sim)}, "sim time with the sim"
    assert all(description for _, description in declared.values())
    expected = graph(Options(name, sim=sim, policy="hold", namespace="cell1", teleop="joy", use_sim_time=sim))
    assert [(n["executable"], n["name"], n["namespace"], n["parameters"], n["remappings"]) for n in nodes] == \
        [(e.executable, e.name, e.namespace, [e.parameters], list(e.remappings)) for e in expected]
    assert all(n["package"] == "vla_ros" for n in nodes)
    installed = set(re.findall(r'"(\w+)": "vla_ros\.nodes\.', (ROOT / "setup.py").read_text()))
    assert {e.executable for e in expected} <= installed, "ros2 run vla_ros <executable> must exist"


@pytest.mark.parametrize("name", SHIPPED)
def test_gazebo_launch_spawns_the_exported_robot_its_controllers_and_the_same_nodes(name):
    """gazebo.launch.py starts gz sim, the robot, its controllers, the bridge and graph()'s nodes.

    gz sim cannot run here: checked with launch_ros stood in (FakeLaunch). gz sim on our world, the
    exported URDF published and spawned, the broadcaster and one controller per commanded group
    spawned, the bridge on the exported file, then graph()'s nodes on sim time.
    """
    embodiment = load_embodiment(name)
    launch = FakeLaunch()
    declared, nodes = launch.run(ROOT / "launch" / "gazebo.launch.py", {"embodiment": name})
    assert list(declared) == [a.name for a in arguments(True)]
    [gz] = launch.included
    assert gz.source.path == "/opt/ros/share/ros_gz_sim/launch/gz_sim.launch.py"
    assert gz.launch_arguments["gz_args"] == "-r /opt/ros/share/vla_ros/config/gz_world.sdf"
    by_executable = {n["executable"]: n for n in nodes}
    description = by_executable["robot_state_publisher"]["parameters"][0]["robot_description"]
    joints = [j.get("name") for j in ElementTree.fromstring(description).find("ros2_control").iter("joint")]
    assert joints == [j for g in embodiment.commanded_groups for j in g.joints]
    assert by_executable["create"]["arguments"] == ["-topic", "robot_description", "-name", name]
    controllers = [g.command_topic.split("/")[0] for g in embodiment.commanded_groups]
    assert by_executable["spawner"]["arguments"] == ["joint_state_broadcaster", *controllers,
                                                     "--controller-manager", "controller_manager"]
    bridge = yaml.safe_load(Path(by_executable["parameter_bridge"]["parameters"][0]["config_file"]).read_text())
    assert {b["ros_topic_name"] for b in bridge} == {"/clock", *(c.topic for c in embodiment.cameras.values())}
    ours = [n for n in nodes if n["package"] == "vla_ros"]
    expected = graph(Options(name, sim=False, use_sim_time=True))
    assert [(n["executable"], n["parameters"]) for n in ours] == [(e.executable, [e.parameters]) for e in expected]


@pytest.mark.parametrize("name", SHIPPED)
def test_export_ros2_control_names_exactly_the_commanded_joints_with_their_interfaces(name, tmp_path):
    """Valid URDFs and a controllers YAML naming exactly the commanded joints.

    Plain: mock hardware to replace; Gazebo: gz_ros2_control, its plugin, cameras. The controllers
    YAML has the broadcaster and one forward command controller per commanded group, named as
    controller_node's command topics; delegated joints (legs) and the base are in none of them.
    """
    embodiment = load_embodiment(name)
    done = subprocess.run([console_script("vla-ros"), "embodiment", "export-ros2-control", name, "--out",
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    commanded = {j: g.mode for g in embodiment.commanded_groups for j in g.joints}
    for urdf, hardware in ((f"{name}.urdf", "mock_components/GenericSystem"),
                           (f"{name}.gazebo.urdf", "gz_ros2_control/GazeboSimSystem")):
        path = tmp_path / urdf
        robot = yourdfpy.URDF.load(str(path), build_scene_graph=False, load_meshes=False)
        assert set(robot.joint_map) == set(embodiment.description.joints), "the robot itself unchanged"
        [system] = ElementTree.parse(path).getroot().findall("ros2_control")
        assert system.find("hardware/plugin").text == hardware
        interfaces = {j.get("name"): [c.get("name") for c in j.findall("command_interface")]
                      for j in system.iter("joint")}
        assert interfaces == {j: [mode] for j, mode in commanded.items()}
        assert all([s.get("name") for s in j.findall("state_interface")] == ["position", "velocity", "effort"]
                   for j in system.iter("joint"))
    gazebo = ElementTree.parse(tmp_path / f"{name}.gazebo.urdf").getroot()
    plugin = gazebo.find("gazebo/plugin")
    assert plugin.get("filename") == "gz_ros2_control-system"
    assert Path(plugin.find("parameters").text) == (tmp_path / f"{name}_controllers.yaml").resolve()
    sensors = {s.get("name"): s.find("topic").text for s in gazebo.iter("sensor")}
    assert sensors == {c.name: c.topic for c in embodiment.cameras.values()}

    document = yaml.safe_load((tmp_path / f"{name}_controllers.yaml").read_text())
    manager = document["controller_manager"]["ros__parameters"]
    assert manager["update_rate"] == embodiment.control_rate_hz
    assert manager.pop("joint_state_broadcaster") == {"type": "joint_state_broadcaster/JointStateBroadcaster"}
    manager.pop("update_rate")
    assert list(manager) == [g.command_topic.removesuffix("/commands") for g in embodiment.commanded_groups]
    assert all(c == {"type": "forward_command_controller/ForwardCommandController"} for c in manager.values())
    for group in embodiment.commanded_groups:
        parameters = document[f"{group.name}_controller"]["ros__parameters"]
        assert parameters == {"joints": list(group.joints), "interface_name": group.mode}
    delegated = {j for g in embodiment.delegated_groups for j in g.joints}
    assert not delegated & set(interfaces), "delegated joints belong to the vendor's balance stack"


def test_a_command_topic_no_forward_command_controller_listens_on_is_refused():
    group = dataclasses.replace(load_embodiment("arm7").groups["arm"], command_topic="arm_cmd")
    with pytest.raises(VlaRosError, match="is not <controller>/commands"):
        controller_name(group)


def _topic_ends(ros, topic: str) -> tuple[set[str], set[str]]:
    publishers = {i.node_name for i in ros.node.get_publishers_info_by_topic(topic)}
    subscribers = {i.node_name for i in ros.node.get_subscriptions_info_by_topic(topic)}
    return publishers, subscribers


def test_vla_ros_up_connects_the_graph_and_stops_it_all_when_a_node_dies(ros):
    """`vla-ros up arm7 --sim`: the three nodes with their topics wired; a dead node stops the rest.

    Killing policy_node stops the others, and up exits 1 naming it.
    """
    embodiment = load_embodiment("arm7")
    up = ros.start([console_script("vla-ros"), "up", "arm7", "--sim", "--policy", "hold"], name="vla-ros-up")
    wiring = {
        "/joint_states": ({"sim_node"}, {"controller_node", "policy_node"}),
        "/vla/action_chunk": ({"policy_node"}, {"controller_node"}),
        "/vla/instruction": ({"sim_node"}, {"policy_node"}),
        "/clock": ({"sim_node"}, set()),
        "/diagnostics": ({"sim_node", "controller_node", "policy_node"}, set()),
        **{f"/{g.command_topic}": ({"controller_node"}, {"sim_node"}) for g in embodiment.commanded_groups},
        **{f"/{c.topic}": ({"sim_node_cameras"}, {"policy_node"}) for c in embodiment.cameras.values()},
    }

    def wired() -> bool:
        for topic, (publishers, subscribers) in wiring.items():
            found_publishers, found_subscribers = _topic_ends(ros, topic)
            if not (publishers <= found_publishers and subscribers <= found_subscribers):
                return False
        return True

    ros.spin_until(wired, 90, "every topic of the graph with its publishers and subscribers:\n" + "\n".join(
        f"  {t}: {p} -> {s}" for t, (p, s) in wiring.items()))
    assert up.running()
    pid = int(re.search(r"policy_node \(pid (\d+)\)", up.output()).group(1))
    os.kill(pid, signal.SIGKILL)
    assert up.popen.wait(timeout=60) == 1, up.output()
    assert "policy_node exited with status -9 (killed by SIGKILL): stopped the other nodes" in up.output()
    ros.spin_until(lambda: not _topic_ends(ros, "/joint_states")[0], 20, "sim_node gone from the graph")


def test_ctrl_c_stops_every_node_of_vla_ros_up_and_exits_0(ros):
    up = ros.start([console_script("vla-ros"), "up", "arm7", "--sim", "--policy", "hold"], name="vla-ros-up")
    ros.spin_until(lambda: {"controller_node", "policy_node"} <= _topic_ends(ros, "/joint_states")[1], 90,
                   "the controller and the policy subscribed to joint_states")
    os.killpg(up.popen.pid, signal.SIGINT)
    assert up.popen.wait(timeout=60) == 0, up.output()
    lines = up.output().splitlines()
    assert any(line.startswith("[sim_node       ]") for line in lines), "each node's lines behind its name"
    assert "stopping every node" in up.output()
    deadline = time.monotonic() + 10
    while _topic_ends(ros, "/joint_states")[0] and time.monotonic() < deadline:
        ros.executor.spin_once(timeout_sec=0.1)
    assert not _topic_ends(ros, "/joint_states")[0], "sim_node outlived up"


def test_two_namespaced_graphs_report_side_by_side_under_their_own_names(ros):
    """Two namespaced graphs report on /diagnostics side by side, each node under its own name.

    `vla-ros up arm7 --sim --wall-clock --namespace robot1` and `... robot2` in one ROS domain (on
    the wall clock: a domain has one /clock): every node (the sim's camera process included)
    reports on the absolute /diagnostics under its own fully qualified name, no two alike, and each
    controller takes its own robot's joint_states.
    """
    diagnostics = ros.diagnostics()
    graphs = {ns: ros.start([console_script("vla-ros"), "up", "arm7", "--sim", "--wall-clock", "--policy", "hold",
                             "--namespace", ns], name=f"up-{ns}") for ns in ("robot1", "robot2")}
    expected = {f"/{ns}/{node}" for ns in graphs
                for node in ("sim_node", "sim_node_cameras", "controller_node", "policy_node")}
    ros.spin_until(lambda: expected <= diagnostics.names(), 120, f"statuses of {sorted(expected)}")
    assert all(name.startswith(("/robot1/", "/robot2/")) for name in diagnostics.names()), diagnostics.names()
    for ns in graphs:
        diagnostics.wait(f"/{ns}/controller_node", lambda s: s["state"] != "waiting_for_state", 30,
                         f"{ns}'s controller taking its robot's joint_states")
    assert all(up.running() for up in graphs.values())
