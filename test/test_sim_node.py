"""sim_node and the scripted expert through real topics over DDS."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from harness import console_script, python_module
from vla_ros.embodiment import load_embodiment
from vla_ros.ros.image import from_image_msg
from vla_ros.ros.services import call_repeatable
from vla_ros.ros.time import to_seconds
from vla_ros.sim.tasks import Reach
from vla_ros.sim.world import COLOURS

SHIPPED = ["arm7", "mobile_manipulator", "humanoid_upper"]


def start_sim(ros, embodiment, *params):
    args = ["--ros-args", "-p", f"embodiment:={embodiment}"]
    for param in params:
        args += ["-p", param]
    return ros.start(python_module("vla_ros.nodes.sim_node", *args), name="sim_node")


def colour_pixels(rgb: np.ndarray, colour: str) -> int:
    """Pixels within a loose band around a cube colour (shading darkens, never shifts hue much)."""
    target = np.array(COLOURS[colour][:3])
    pixels = rgb.reshape(-1, 3) / 255.0
    brightness = pixels.max(axis=1, keepdims=True)
    normalised = pixels / np.maximum(brightness, 1e-6)
    return int(((np.abs(normalised - target / target.max()).max(axis=1) < 0.25) & (brightness[:, 0] > 0.15)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_publishes_joint_states_at_the_control_rate_and_images_of_the_scene(ros, name):
    """joint_states come every control period and keep pace with the wall clock; cameras show robot and cubes.

    Stamps are sim time, one per physics step, so their spacing is the control period by construction;
    what can fail is the pace: a sim that falls behind real time delivers each stamp later than the last
    (the smallest delivery lag, the transport's floor, grows). A
    Python subscriber on a loaded machine may drop a few messages, which says nothing about the sim,
    so the pace is measured from the stamp span, not from a message count.
    """
    embodiment = load_embodiment(name)
    start_sim(ros, name)
    ros.wait_for("joint_states", JointState, timeout_s=60)
    received = []
    ros.node.create_subscription(JointState, "joint_states",
                                 lambda m: received.append((to_seconds(m.header.stamp), time.monotonic())), 100)
    ros.spin_until(lambda: len(received) > 1 and received[-1][0] - received[0][0] >= 5.0, 30, "5 s of joint_states")
    stamps, arrivals = np.array(received).T
    assert 1.0 / np.median(np.diff(stamps)) == pytest.approx(embodiment.control_rate_hz, rel=0.02)
    lag = arrivals - stamps  # transport delay plus a constant clock offset, plus any growing backlog
    first, last = lag[stamps < stamps[0] + 1.0].min(), lag[stamps > stamps[-1] - 1.0].min()
    assert abs(last - first) < 0.02 * (stamps[-1] - stamps[0]), "the sim fell behind the wall clock"
    assert len(stamps) >= 0.9 * (stamps[-1] - stamps[0]) * embodiment.control_rate_hz
    first = ros.wait_for("joint_states", JointState)
    assert set(first.name) == {j.name for j in embodiment.description.movable_joints}
    assert len(first.position) == len(first.velocity) == len(first.effort) == len(first.name)
    seen = {c: 0 for c in ("red", "green", "blue")}
    robot = 0
    for camera in embodiment.cameras.values():
        msg = ros.wait_for(camera.topic, Image, qos=qos_profile_sensor_data, timeout_s=30)
        rgb = from_image_msg(msg)
        assert rgb.shape == (camera.height, camera.width, 3) and msg.header.frame_id == camera.frame
        assert rgb.std() > 10, f"{camera.name} shows a flat image"
        robot += int(((rgb.min(axis=2) > 150) & (np.ptp(rgb, axis=2) < 25)).sum())  # white and grey links
        for colour in seen:
            seen[colour] += colour_pixels(rgb, colour)
    assert robot > 200, "no robot in any camera"
    assert all(count >= 10 for count in seen.values()), seen


def test_a_sim_stalled_past_the_lag_limit_skips_ahead_and_its_stamps_match_the_wall_clock_again(ros):
    """After a stall (here SIGSTOP for 1 s) the sim gives the lost time up instead of trailing the wall clock.

    Trailing stamps would make every camera frame look older than policy_node's max_image_age_s for
    the rest of the run; the gap shows in the stamps and the overrun is counted in diagnostics.
    """
    sim = start_sim(ros, "arm7", "publish_cameras:=false")
    ros.wait_for("joint_states", JointState, timeout_s=60)
    os.kill(sim.popen.pid, signal.SIGSTOP)
    time.sleep(1.0)
    os.kill(sim.popen.pid, signal.SIGCONT)
    resumed = time.time()
    lags = []
    ros.node.create_subscription(JointState, "joint_states",
                                 lambda m: lags.append((time.time(), time.time() - to_seconds(m.header.stamp))), 100)
    ros.spin_until(lambda: lags and lags[-1][0] > resumed + 2.0, 20, "2 s of joint_states after the stall")
    settled = [lag for arrival, lag in lags if arrival > resumed + 1.0]
    assert min(settled) < 0.05, f"stamps trail the wall clock by {min(settled):.3f} s after the stall"
    status = ros.wait_for("diagnostics", DiagnosticArray, timeout_s=5,
                          predicate=lambda m: any(s.name == "vla_ros/sim_node" for s in m.status)).status[0]
    values = dict((kv.key, kv.value) for kv in status.values)
    assert int(values["realtime_overruns"]) >= 1 and float(values["time_given_up_s"]) > 0.8
    assert values["command_age_max_ms"] == "0.0", "nothing commands this arm: no command is applied, none is stale"
    assert status.level == DiagnosticStatus.WARN


def test_bad_commands_are_rejected_and_the_robot_keeps_its_state(ros):
    """Wrong length and NaN commands are refused with a warning; the held arm does not move."""
    start_sim(ros, "arm7", "publish_cameras:=false")
    before = ros.wait_for("joint_states", JointState, timeout_s=60)
    command = ros.node.create_publisher(Float64MultiArray, "arm_controller/commands", 10)
    ros.spin_until(lambda: command.get_subscription_count() > 0, 10, "the sim subscribed to the commands")
    diagnostics = ros.subscribe("diagnostics", DiagnosticArray)
    def reported(count: int, reason: str):
        def check() -> bool:
            values = [dict((kv.key, kv.value) for kv in s.values) for m in diagnostics for s in m.status]
            return any(int(v.get("rejected_commands", 0)) >= count and reason in v["last_rejected"] for v in values)
        return check

    def keep_sending(data, until):
        """Publish `data` every spin (the first ones may precede the reader's side of discovery)."""
        def send_and_check() -> bool:
            command.publish(Float64MultiArray(data=data))
            return until()
        return send_and_check

    ros.spin_until(keep_sending([0.0] * 6, reported(10, "6 values for 7 joints")), 20,
                   "diagnostics counting wrong-length commands")
    ros.spin_until(keep_sending([float("nan")] * 7, reported(20, "non-finite values")), 20,
                   "diagnostics counting NaN commands")
    after = ros.wait_for("joint_states", JointState)
    moved = np.abs(np.array(after.position) - np.array(before.position)).max()
    assert moved < 0.01, f"the robot moved {moved:.4f} under rejected commands"
    assert "arm: command rejected: 6 values for 7 joints" in ros.processes[0].output(), "a warning in the log"


def test_in_a_namespace_the_camera_node_and_every_topic_are_in_it_too(ros):
    """Two robots in one graph must not share a node name: the camera process joins sim_node's namespace."""
    ros.start(python_module("vla_ros.nodes.sim_node", "--ros-args", "-r", "__ns:=/cell1", "-p", "embodiment:=arm7"),
              name="sim_node")
    ros.wait_for("/cell1/camera/front/image_raw", Image, timeout_s=60, qos=qos_profile_sensor_data)
    ros.wait_for("/cell1/joint_states", JointState, timeout_s=10)
    names = set(ros.node.get_node_names_and_namespaces())
    assert {("sim_node", "/cell1"), ("sim_node_cameras", "/cell1")} <= names, names


def test_after_a_reset_the_brakes_hold_the_new_pose_before_commands_act_again(ros):
    """Commands still arriving at a reset (here zero torques: the arm would sag under gravity) are
    dropped for reset_settle_s while the brakes hold the teleported pose; then they act again."""
    start_sim(ros, "arm7", "publish_cameras:=false", "reset_settle_s:=0.25")
    command = ros.node.create_publisher(Float64MultiArray, "arm_controller/commands", 10)
    reset = ros.node.create_client(Trigger, "sim_node/reset")
    ros.spin_until(lambda: reset.service_is_ready() and command.get_subscription_count() > 0, 60, "the sim")
    states = ros.subscribe("joint_states", JointState, 1000)
    statuses = ros.subscribe("sim/task_status", DiagnosticStatus)
    sagging = lambda: command.publish(Float64MultiArray(data=[0.0] * 7))  # noqa: E731
    status_values = lambda: [dict((kv.key, kv.value) for kv in m.values) for m in statuses]  # noqa: E731
    ros.spin_until(lambda: bool(statuses), 10, "a status of the first episode")
    episode = int(status_values()[0]["episode"]) + 1  # the reset's; its statuses may come before the answer
    assert call_repeatable(reset, Trigger.Request(), lambda: (sagging(), ros.executor.spin_once(timeout_sec=0.05)), 20),\
        "the reset answered"
    ros.spin_until(lambda: sagging() or any(int(v["episode"]) == episode and float(v["episode_time"]) > 1.0
                                            for v in status_values()), 20, "a second of the new episode under zero torques")
    # The episode's first status dates its start: a later one would be off by any time the sim
    # gave up after a stall since (the stamps jump, the episode time does not), and the answer to
    # the reset can come well after it.
    values = min((v for v in status_values() if int(v["episode"]) == episode), key=lambda v: float(v["episode_time"]))
    start = float(values["stamp"]) - float(values["episode_time"])
    arm = [(to_seconds(m.header.stamp) - start, np.array(m.position[:7])) for m in states
           if to_seconds(m.header.stamp) >= start - 1e-6]
    first = arm[0][1]
    settling = max(np.abs(q - first).max() for t, q in arm if t < 0.2)
    later = max(np.abs(q - first).max() for t, q in arm if t > 0.8)
    assert settling < 0.005, f"the arm moved {settling:.3f} rad while the brakes should hold it"
    assert later > 0.05, "after reset_settle_s the commands act again (zero torque: the arm sags)"


def test_reset_with_the_same_seed_restores_the_same_scene(ros):
    """~/reset with a seed gives the same cube poses, a different seed different ones."""
    start_sim(ros, "arm7", "publish_cameras:=false", "seed:=11", "task:=reach:blue")
    client = ros.node.create_client(Trigger, "sim_node/reset")
    ros.spin_until(client.service_is_ready, 60, "the reset service")

    def scene() -> dict:
        ros.wait_for("sim/task_status", DiagnosticStatus, predicate=lambda m: any(
            kv.key == "episode_time" and float(kv.value) < 0.2 for kv in m.values))
        markers = ros.wait_for("sim/objects", MarkerArray)
        return {m.text: np.array([m.pose.position.x, m.pose.position.y]) for m in markers.markers}

    def reset() -> str:
        response = ros.call(client, Trigger.Request())
        assert response.success
        return response.message

    assert reset() == "reach the blue cube"
    first = scene()
    reset()
    second = scene()
    assert second.keys() == first.keys()
    for name in first:  # markers come from the running sim, a few ms after the reset
        assert np.allclose(second[name], first[name], atol=1e-3)
    parameters = ros.node.create_client(SetParameters, "sim_node/set_parameters")
    ros.call(parameters, SetParameters.Request(parameters=[Parameter(
        name="seed", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=12))]))
    reset()
    third = scene()
    assert not all(np.allclose(third[name], first[name], atol=1e-3) for name in first)


def test_held_out_phrasing_is_fixed_by_the_seed_and_names_the_target(ros):
    """phrasing held_out: the instruction (on ~/reset, vla/instruction, sim/task_status) is a held-out
    phrasing naming the target, the same for the same seed; a phrasing that is no split is refused."""
    start_sim(ros, "arm7", "publish_cameras:=false", "seed:=11", "task:=reach", "phrasing:=held_out")
    reset = ros.node.create_client(Trigger, "sim_node/reset")
    parameters = ros.node.create_client(SetParameters, "sim_node/set_parameters")
    ros.spin_until(lambda: reset.service_is_ready() and parameters.service_is_ready(), 60, "the sim's services")
    instructions = ros.subscribe("vla/instruction", String,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))


    def status(episode: int) -> dict:
        msg = ros.wait_for("sim/task_status", DiagnosticStatus, timeout_s=30, predicate=lambda m: any(
            kv.key == "episode" and kv.value == str(episode) for kv in m.values))
        return {kv.key: kv.value for kv in msg.values}

    first = status(0)  # the episode the node starts with, at seed 11
    colour = first["target"].removesuffix("_cube")
    assert first["instruction"] in {t.format(colour=colour) for t in Reach.phrasings["held_out"]}
    answer = ros.call(reset, Trigger.Request())
    assert answer.success and answer.message == first["instruction"], "the same seed worded differently"
    assert status(1)["instruction"] == answer.message
    ros.spin_until(lambda: instructions and instructions[-1].data == answer.message, 10, "vla/instruction")

    def set_phrasing(value: str):
        return ros.call(parameters, SetParameters.Request(parameters=[Parameter(
            name="phrasing", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))])).results[0]

    refused = set_phrasing("paraphrased")
    assert not refused.successful and "phrasing 'paraphrased' is not one of canonical, train, held_out" in refused.reason
    assert set_phrasing("canonical").successful
    assert ros.call(reset, Trigger.Request()).message == f"reach the {colour} cube"


def test_a_bad_phrasing_stops_the_node_at_start_up():
    """phrasing:=paraphrased at start-up: exit 2 with the allowed values, no traceback."""
    result = subprocess.run(python_module("vla_ros.nodes.sim_node", "--ros-args", "-p", "publish_cameras:=false",
                                          "-p", "phrasing:=paraphrased"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "phrasing 'paraphrased' is not one of canonical, train, held_out" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["arm7", "mobile_manipulator"])
def test_vla_ros_sim_runs_the_expert_through_ros(tmp_path, name):
    """`vla-ros sim` (sim_node + expert node over DDS) succeeds at reach and writes JSON and a contact sheet.

    Four of five: a torque loop through DDS between Python processes on 2 cores occasionally
    meets a latency spike that makes the arm knock the cube (the in-process expert is 40/40).
    """
    out = tmp_path / "result.json"
    sheet = tmp_path / "sheet.png"
    result = subprocess.run([console_script("vla-ros"), "sim", name, "--episodes", "5", "--json", str(out),
                             "--video", str(sheet)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["episodes"] == 5 and report["successes"] >= 4, result.stdout
    assert sheet.stat().st_size > 10_000
