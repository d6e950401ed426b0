"""teleop_node in the graph: a person takes over mid-chunk and hands back, tagged by the recorder; each bad input.

The graph is a real robot's (controller, a policy, teleop_node, recorder over DDS) with the MuJoCo
sim standing in for the hardware. A person at a gamepad or a leader arm cannot run here: the test
publishes the sensor_msgs/Joy and leader JointState messages their drivers would.
"""
import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from vla_ros.control.teleop import JoyMapping
from vla_ros.data.bag import read_episode
from vla_ros.embodiment import load_embodiment
from vla_ros.ros.polled import polled_subscription, take_all
from vla_ros.ros.qos import RELIABLE

ARM7 = load_embodiment("arm7")
MAPPING = JoyMapping()
COMMANDED = [j for g in ARM7.commanded_groups for j in g.joints]
ACCEL = np.concatenate([g.accel_limit for g in ARM7.commanded_groups])
PERIOD_S = 1.0 / ARM7.control_rate_hz


def gamepad(deadman: bool, up: float = 0.0, axes: int = 8) -> Joy:
    """What the joy node publishes for a gamepad with the deadman held (or not) and the right stick pushed up."""
    values = [0.0] * axes
    if MAPPING.axis_z < axes:
        values[MAPPING.axis_z] = up
    buttons = [0] * 11
    buttons[MAPPING.deadman_button] = int(deadman)
    return Joy(axes=values, buttons=buttons)


def tool_height(msg: JointState) -> float:
    q = np.zeros(len(ARM7.kinematics.joint_names))
    names = list(msg.name)
    for k, joint in enumerate(ARM7.kinematics.joint_names):
        q[k] = msg.position[names.index(joint)]
    return float(ARM7.kinematics.frame_pose(q, ARM7.groups["arm"].ee_frame)[2, 3])


def test_a_gamepad_takes_over_mid_chunk_and_hands_back_without_a_jump_and_the_recorder_tags_it(ros, tmp_path):
    """Deadman held with the stick up: the policy's chunks are set aside, the tool rises, the handovers are smooth.

    The stand-in policy (chunk_source_node) keeps the arm moving and keeps publishing throughout, as
    a policy without an intervention subscription would. A Joy message with too few axes during the
    takeover is refused with one diagnostic and the arm holds; on release the policy's chunks are
    tracked again. The recorder's episode holds the intervention segment.
    """
    diagnostics = ros.diagnostics()
    recorder = ros.start_node("recorder_node", out_dir=str(tmp_path / "episodes"))
    ros.start_node("sim_node", task="reach:red", seed=3, publish_cameras=False)
    ros.start_node("controller_node")
    ros.start_node("chunk_source_node", interval_s=0.2, delay_s=0.05)
    ros.start_node("teleop_node", input="joy", rate_hz=20.0)
    states = polled_subscription(ros.node, JointState, "joint_states", 5000)
    commanded = polled_subscription(ros.node, JointState, "controller_node/commanded", 10000)
    joy = ros.node.create_publisher(Joy, "joy", RELIABLE)

    def controller(predicate, what):
        return diagnostics.wait("controller_node", predicate, 30, what)

    controller(lambda s: int(s["chunks_accepted"]) > 5 and s["state"] == "tracking", "the policy's chunks tracked")
    diagnostics.wait("recorder_node", lambda s: "recording episode 1" in s["message"], 30, "episode 1 under way")

    def hold(message: Joy, seconds: float) -> None:
        """Publish `message` at 20 Hz for `seconds`, as the joy node does for a held stick."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            joy.publish(message)
            ros.executor.spin_once(timeout_sec=0.05)

    pressed = time.monotonic()
    hold(gamepad(deadman=True, up=0.0), 0.3)
    status = controller(lambda s: s["intervening"] == "true" and int(s["teleop_chunks"]) > 0, "the takeover")
    assert "a person is driving" in status["message"]
    rejected = int(status["chunks_rejected"])
    take_all(states)
    hold(gamepad(deadman=True, up=1.0), 1.0)
    heights = [tool_height(msg) for msg in take_all(states)]
    assert heights[-1] - heights[0] > 0.05, f"the tool rose {heights[-1] - heights[0]:.3f} m at 0.1 m/s for 1 s"
    status = controller(lambda s: True, "a status")
    assert int(status["chunks_rejected"]) > rejected, "the policy's chunks were set aside"
    assert "a person is driving (vla/intervention)" in status["last_rejection"]

    hold(gamepad(deadman=True, up=1.0, axes=3), 0.5)
    teleop = diagnostics.wait("teleop_node", lambda s: s["level"] == 2, 10, "the refusal")
    assert teleop["message"] == "joy has 3 axes, but axis_z maps axis 4"
    controller(lambda s: s["state"] == "holding" and s["intervening"] == "true", "the arm held")
    still = [tool_height(msg) for msg in take_all(states)[-100:]]
    assert max(still) - min(still) < 0.002

    held_s = time.monotonic() - pressed
    hold(gamepad(deadman=False), 0.3)
    controller(lambda s: s["intervening"] == "false", "the hand-back")
    accepted = int(controller(lambda s: True, "a status")["chunks_accepted"])
    status = controller(lambda s: int(s["chunks_accepted"]) > accepted + 3 and s["state"] == "tracking",
                        "the policy's chunks tracked again")
    assert status["interventions"] == "1"

    messages = take_all(commanded)
    velocities = np.array([[m.velocity[list(m.name).index(j)] for j in COMMANDED] for m in messages])
    stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in messages])
    assert len(velocities) > 1000
    periods = np.maximum(np.round(np.diff(stamps) / PERIOD_S), 1.0)[:, None]  # a message the test missed
    ratio = np.abs(np.diff(velocities, axis=0)) / (ACCEL * PERIOD_S * periods)
    assert np.all(ratio <= 1.001), "no velocity jump, ever"

    finish = ros.node.create_client(SetBool, "recorder_node/finish")
    answer = ros.call(finish, SetBool.Request(data=True))
    assert answer.success, answer.message
    assert recorder.stop() == 0, recorder.describe()
    episode = read_episode(answer.message.removeprefix("recorded "), cameras=False)
    assert len(episode.interventions) == 1
    start, end = episode.interventions[0]
    assert end - start == pytest.approx(held_s, abs=0.3)
    assert len(episode.outcome["interventions"]) == 1
    assert episode.outcome["intervention_s"] == pytest.approx(end - start, abs=0.05)
    during = episode.intervening(episode.commands.times)
    assert during.sum() > 500, "the person's targets are the episode's commands while they drove"


def test_a_leader_arm_drives_the_follower_by_name_bad_input_holds_it_and_the_scripted_operator_uses_it(ros, tmp_path):
    """vla/intervention starts the takeover; the follower goes where the leader is; a misnamed joint is refused.

    A second teleop_node in a namespace where no joint_states come (the robot's driver is down) sends
    nothing when taken over, and says why. Then, handed back with no policy to drive, the scripted
    operator sees the arm make no progress, takes over through the same leader topic with a
    correction, reaches the cube and labels the episode through recorder_node's ~/finish; the bag
    holds what the flywheel learns from (test_flywheel.py).
    """
    diagnostics = ros.diagnostics()
    ros.start_node("teleop_node", namespace="/lonely", input="leader")
    recorder = ros.start_node("recorder_node", out_dir=str(tmp_path / "episodes"))
    ros.start_node("sim_node", task="reach:red", seed=3, publish_cameras=False)
    ros.start_node("controller_node")
    ros.start_node("teleop_node", input="leader", leader_prefix="leader_", rate_hz=30.0)
    intervention = ros.node.create_publisher(Bool, "vla/intervention", RELIABLE)
    leader = ros.node.create_publisher(JointState, "leader/joint_states", RELIABLE)
    states = polled_subscription(ros.node, JointState, "joint_states", 5000)
    diagnostics.wait("controller_node", lambda s: s["state"] == "holding", 30, "the controller holding home")
    arm = list(ARM7.groups["arm"].joints)
    target = ARM7.groups["arm"].home + np.array([0.3, -0.2, 0, 0.2, 0, 0, 0])

    def publish(names, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            intervention.publish(Bool(data=True))
            leader.publish(JointState(name=names, position=target.tolist()))
            ros.executor.spin_once(timeout_sec=0.03)

    publish([f"leader_{j}" for j in arm], 2.0)
    status = diagnostics.wait("controller_node", lambda s: int(s["teleop_chunks"]) > 10, 10, "teleop chunks")
    msg = take_all(states)[-1]
    reached = np.array([msg.position[list(msg.name).index(j)] for j in arm])
    assert reached == pytest.approx(target, abs=0.02), "the follower where the leader is"
    assert status["intervening"] == "true"

    wrong = [f"leader_{j}" for j in arm]
    wrong[1] = "leader_jiont2"
    publish(wrong, 0.5)
    teleop = diagnostics.wait("teleop_node", lambda s: s["level"] == 2, 10, "the refusal")
    assert "['jiont2'] are not commanded joints of arm7" in teleop["message"] and "'joint2'" in teleop["message"]
    diagnostics.wait("controller_node", lambda s: s["state"] == "holding", 10, "the follower held")

    lonely_chunks = ros.subscribe("/lonely/vla/teleop_chunk", JointTrajectory)
    lonely_intervention = ros.node.create_publisher(Bool, "/lonely/vla/intervention", RELIABLE)
    lonely_leader = ros.node.create_publisher(JointState, "/lonely/leader/joint_states", RELIABLE)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        lonely_intervention.publish(Bool(data=True))
        lonely_leader.publish(JointState(name=["joint1"], position=[0.1]))
        ros.executor.spin_once(timeout_sec=0.03)
    status = diagnostics.wait("/lonely/teleop_node", lambda s: s["level"] == 2, 10, "the diagnostic")
    assert status["message"].startswith("takeover without fresh joint_states")
    assert status["chunks_published"] == "0" and not lonely_chunks

    intervention.publish(Bool(data=False))
    diagnostics.wait("controller_node", lambda s: s["intervening"] == "false", 10, "the hand-back")
    operator = ros.start_node("operator_node", seconds=60.0, patience_s=0.5, stall_s=1.0)
    status = diagnostics.wait("operator_node", lambda s: int(s["labels"]) == 1, 60, "the episode labelled")
    assert status["takeovers"] == "1" and status["corrections"] == "1" and float(status["takeover_s"]) > 0.5
    assert operator.running()
    written = diagnostics.wait("recorder_node", lambda s: int(s["episodes_written"]) == 1, 10, "the bag")
    assert recorder.stop() == 0, recorder.describe()
    episode = read_episode(written["last_bag"], cameras=False)
    assert episode.outcome["success"] is True and episode.instructions[0][1] == "reach the red cube"
    [(said_at, said)] = episode.corrections
    assert "red" in said and {"red_cube", "green_cube", "blue_cube"} <= set(episode.objects)
    start, end = episode.interventions[-1]  # the test's own takeover came first
    assert abs(said_at - start) < 0.2 and end - start > 1.0, "said as it took over"
