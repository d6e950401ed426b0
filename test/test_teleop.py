"""Teleoperation cores: the gamepad and leader-arm mappings, and the controller's handovers to a person and back."""
import numpy as np
import pytest

from vla_ros.control.chunk import ChunkRejected, JointChunk
from vla_ros.control.controller import Controller, ControllerConfig
from vla_ros.control.teleop import JoyMapping, JoyTeleop, LeaderTeleop, TeleopInputError, teleop_arm
from vla_ros.control.timeline import Timeline
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError

ARM7 = load_embodiment("arm7")
DT = 0.002
AXES = [0.0] * 8
BUTTONS = [0] * 11
DEADMAN = JoyMapping().deadman_button


def home_state(embodiment=ARM7) -> np.ndarray:
    q = np.zeros(len(embodiment.kinematics.joint_names))
    for group in embodiment.commanded_groups:
        q[embodiment.kinematics.index(group.joints)] = group.home
    return q


def joy(**deflections) -> list[float]:
    """Joy axes with the mapped ones of JoyMapping() deflected (e.g. x=1.0)."""
    axes = list(AXES)
    for name, value in deflections.items():
        axes[getattr(JoyMapping(), f"axis_{name}")] = value
    return axes


def pressed(*roles) -> list[int]:
    buttons = list(BUTTONS)
    for role in roles:
        buttons[getattr(JoyMapping(), role)] = 1
    return buttons


def tool(q_full: np.ndarray) -> np.ndarray:
    return ARM7.kinematics.frame_pose(q_full, ARM7.groups["arm"].ee_frame)


@pytest.mark.parametrize("axes, buttons, reason", [
    (AXES[:4], BUTTONS, "joy has 4 axes, but axis_z maps axis 4"),
    (AXES, BUTTONS[:3], "joy has 3 buttons, but deadman_button maps button 4"),
    (joy(x=float("nan")), BUTTONS, "joy axis 1 (axis_x) is nan"),
])
def test_a_joy_message_that_does_not_fit_the_mapping_is_refused_with_the_reason(axes, buttons, reason):
    """Too few axes or buttons for the mapping, or a NaN axis: TeleopInputError naming it, no chunk."""
    teleop = JoyTeleop(ARM7, JoyMapping())
    with pytest.raises(TeleopInputError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        teleop.chunk(home_state(), axes, buttons, 0.0)


def test_stick_deflection_maps_to_a_tool_twist_with_a_dead_zone():
    """Full deflection is full speed, drift inside the dead zone is zero, unmapped axes do nothing."""
    mapping = JoyMapping(linear_speed=0.2, angular_speed=1.0, deadzone=0.1)
    assert mapping.twist(joy(x=1.0, y=-1.0)) == pytest.approx([0.2, -0.2, 0, 0, 0, 0])
    assert mapping.twist(joy(x=0.05, yaw=-0.08)) == pytest.approx(np.zeros(6))
    assert mapping.twist(joy(yaw=0.55)) == pytest.approx([0, 0, 0, 0, 0, 0.5])
    assert not np.any(JoyMapping(axis_x=-1).twist(joy(x=1.0)))


def test_the_gamepad_moves_the_tool_along_the_stick_and_holds_exactly_when_let_go():
    """Forward stick for 1 s moves the tool +x at the mapped speed (within the IK); a centred stick holds still."""
    teleop = JoyTeleop(ARM7, JoyMapping(linear_speed=0.1), dt=0.05)
    q = home_state()
    start = tool(q)
    for tick in range(20):
        chunk = teleop.chunk(q, joy(x=1.0), BUTTONS, tick * 0.05)
        q[ARM7.kinematics.index(chunk.joints)] = chunk.positions[0]
    moved = tool(q)[:3, 3] - start[:3, 3]
    assert moved[0] == pytest.approx(0.1, abs=0.01)
    assert np.abs(moved[1:]) == pytest.approx([0, 0], abs=0.005)
    assert np.allclose(tool(q)[:3, :3], start[:3, :3], atol=0.02)
    held = teleop.chunk(q, joy(), BUTTONS, 1.0)
    assert np.allclose(held.positions, held.positions[0]) and np.allclose(held.positions[0], q[ARM7.kinematics.index(
        held.joints)])
    assert np.allclose(held.times, 0.05 * np.arange(1, 6))


def test_yaw_turns_the_tool_about_the_vertical_and_buttons_close_and_open_the_gripper():
    """The yaw axis rotates the tool about z in place; the close button targets the closed limit, open the open one."""
    teleop = JoyTeleop(ARM7, JoyMapping(angular_speed=0.5), dt=0.05)
    q = home_state()
    start = tool(q)
    for tick in range(10):
        chunk = teleop.chunk(q, joy(yaw=1.0), pressed("close_button"), tick * 0.05)
        q[ARM7.kinematics.index(chunk.joints)] = chunk.positions[0]
    turned = start[:3, :3].T @ tool(q)[:3, :3]
    angle = np.arctan2(turned[1, 0], turned[0, 0])
    assert abs(angle) == pytest.approx(0.25, abs=0.03)
    assert np.linalg.norm(tool(q)[:3, 3] - start[:3, 3]) < 0.005
    gripper = ARM7.groups["gripper"]
    open_, closed = gripper.grip_range()
    finger = list(chunk.joints).index(gripper.joints[0])
    assert chunk.positions[-1, finger] == pytest.approx(closed[0])
    chunk = teleop.chunk(q, joy(), pressed("open_button"), 1.0)
    assert chunk.positions[-1, finger] == pytest.approx(open_[0])


def test_a_gamepad_target_far_from_the_measured_arm_starts_again_from_the_measured_arm():
    """After the arm was stopped (a following fault), the teleop's targets re-anchor: no pull across the workspace."""
    teleop = JoyTeleop(ARM7, JoyMapping(), dt=0.05)
    q = home_state()
    teleop.chunk(q, joy(x=1.0), BUTTONS, 0.0)
    elsewhere = q.copy()
    elsewhere[ARM7.kinematics.index(ARM7.groups["arm"].joints)] += 0.3
    held = teleop.chunk(elsewhere, joy(), BUTTONS, 0.05)
    arm = [list(held.joints).index(j) for j in ARM7.groups["arm"].joints]
    assert np.allclose(held.positions[0, arm], elsewhere[ARM7.kinematics.index(ARM7.groups["arm"].joints)])


def test_the_teleoperated_arm_is_the_named_one_or_the_first():
    """A humanoid's right arm can be chosen; a typo names the arms with a suggestion."""
    humanoid = load_embodiment("humanoid_upper")
    assert teleop_arm(humanoid).name == "left_arm"
    assert teleop_arm(humanoid, "right_arm").name == "right_arm"
    with pytest.raises(VlaRosError, match="did you mean 'right_arm'"):
        teleop_arm(humanoid, "rigth_arm")


def follower_at(**joints) -> np.ndarray:
    """The measured joints: home, with `joints` (joint1=0.2) where given."""
    q = home_state()
    for name, value in joints.items():
        q[ARM7.kinematics.index([name])[0]] = value
    return q


def test_a_leader_arm_maps_its_joints_by_name_with_its_velocities_or_estimated_ones():
    """Prefix stripped, positions lead_s ahead, the leader's velocities, or differences of its last two messages."""
    leader = LeaderTeleop(ARM7, prefix="leader_", lead_s=0.1)
    near = follower_at(joint1=0.1, joint2=0.2)
    chunk = leader.chunk(["leader_joint1", "leader_joint2"], [0.1, 0.2], [], 1.0, near)
    assert chunk.joints == ("joint1", "joint2") and chunk.times == pytest.approx([0.1])
    assert chunk.positions[0] == pytest.approx([0.1, 0.2]) and chunk.velocities[0] == pytest.approx([0, 0])
    chunk = leader.chunk(["leader_joint1", "leader_joint2"], [0.12, 0.2], [], 1.1, near, measured=1.02)
    assert chunk.velocities[0] == pytest.approx([1.0, 0.0]), "from the leader's own stamps"
    assert chunk.stamp == 1.1
    chunk = leader.chunk(["leader_joint1", "leader_joint2"], [0.12, 0.2], [0.5, -0.5], 1.2, near)
    assert chunk.velocities[0] == pytest.approx([0.5, -0.5])


def test_a_follower_far_from_the_leader_catches_up_slowly_and_arrives_at_rest():
    """A takeover with the arms 0.6 rad apart: there at catch_up_speed (1.2 s at 0.5 rad/s), not in lead_s."""
    leader = LeaderTeleop(ARM7, lead_s=0.1, catch_up_speed=0.5)
    chunk = leader.chunk(["joint1"], [0.6], [3.0], 0.0, follower_at(joint1=0.0))
    assert chunk.times == pytest.approx([1.2]) and chunk.velocities[0] == pytest.approx([0.0])


@pytest.mark.parametrize("embodiment, names, positions, reason", [
    ("arm7", ["leader_joint1", "leader_jiont2"], [0.0, 0.0], r"\['jiont2'\] are not commanded joints of arm7 "
                                                             r"\(after stripping the prefix 'leader_'\).*'joint2'"),
    ("arm7", ["leader_joint1"], [float("inf")], "non-finite positions"),
    ("arm7", ["leader_joint1", "leader_joint2"], [0.0], "1 positions for 2 names"),
    ("arm7", [], [], "no joint names"),
    ("arm7", ["leader_joint1", "joint1"], [0.0, 0.0], r"\['joint1'\] appear more than once"),
    ("arm7", ["leader_joint1"], [1e308], "joint1 at .* is far outside the follower's limits"),
    ("humanoid_upper", ["leader_left_knee_joint"], [0.0], "delegated to the vendor stack"),
])
def test_a_leader_message_that_does_not_fit_the_follower_is_refused_with_the_reason(embodiment, names, positions,
                                                                                     reason):
    """Unknown or delegated joints, bad numbers, ragged messages: TeleopInputError naming the fault."""
    with pytest.raises(TeleopInputError, match=reason):
        body = load_embodiment(embodiment)
        LeaderTeleop(body, prefix="leader_").chunk(names, positions, [], 0.0, home_state(body))


def test_stopping_the_timeline_keeps_position_and_velocity_continuous_and_comes_to_rest_within_the_limits():
    """Timeline.stop from full motion: no jump in q* or qd*, deceleration within each joint's limit, then rest."""
    accel = np.array([2.0, 4.0])
    timeline = Timeline(2)
    timeline.reset(np.zeros(2))
    timeline.add(JointChunk(0.0, ("a", "b"), np.array([0.5, 1.0]), np.array([[0.5, -0.5], [1.0, -1.0]]),
                            np.array([[1.0, -1.0], [1.0, -1.0]])), np.arange(2), 0.0)
    q_before, v_before = timeline.sample(0.6)
    timeline.stop(0.6, accel)
    q_after, v_after = timeline.sample(0.6)
    assert q_after == pytest.approx(q_before) and v_after == pytest.approx(v_before)
    times = np.arange(0.6, 1.5, 0.001)
    velocities = np.array([timeline.sample(t)[1] for t in times])
    assert np.all(np.abs(np.diff(velocities, axis=0)) / 0.001 <= accel + 1e-6)
    assert velocities[-1] == pytest.approx([0, 0]) and timeline.exhausted(1.5)


def run(controller, seconds, start=0.0, each=lambda t: None):
    """Step the controller with the arm measured where it is commanded (perfect tracking); (times, qd*)."""
    q = home_state()
    rows = []
    for k in range(int(round(seconds / DT))):
        t = start + k * DT
        controller.update_state(q, np.zeros_like(q), t)
        each(t)
        out = controller.step(t, DT)
        q[controller.kinematics_index] = out.q_command
        rows.append(controller.timeline.sample(t)[1])
    return np.array(rows)


def test_a_takeover_mid_chunk_and_the_hand_back_keep_the_targets_velocity_continuous():
    """Policy chunk, takeover, teleop chunks, hand-back, policy chunk: qd* never jumps (splices and stops only)."""
    controller = Controller(ARM7, ControllerConfig())
    teleop = JoyTeleop(ARM7, JoyMapping(), dt=0.05)
    home = np.concatenate([g.home for g in controller.groups])
    moving = np.zeros(len(home))
    moving[:7] = 0.4

    def policy_chunk(t):
        return JointChunk(t, tuple(controller.joints), np.array([0.5, 1.0]), np.vstack([home + moving / 2, home +
                                                                                        moving]))

    def script(t):
        k = int(round(t / DT))
        if k == 5:
            controller.submit(policy_chunk(t), t)
        elif k == 200:  # mid-chunk, at speed
            controller.set_intervention(True, t)
        elif 200 < k < 600 and k % 25 == 0:
            state = home_state()
            state[controller.kinematics_index] = controller.limiter.q
            controller.submit(teleop.chunk(state, joy(z=1.0), pressed("deadman_button"), t), t, teleop=True)
        elif k == 600:
            controller.set_intervention(False, t)
        elif k == 650:
            controller.submit(policy_chunk(t), t)

    velocities = run(controller, 1.6, each=script)
    jumps = np.abs(np.diff(velocities, axis=0)).max(axis=1)
    assert controller.stats.interventions == 1 and controller.stats.teleop_chunks == 15
    assert np.abs(velocities[199]).max() > 0.3  # the takeover came while the arm moved
    assert jumps.max() < 0.1 * np.abs(velocities).max()  # per 2 ms period: curves, not steps


def test_during_an_intervention_policy_chunks_are_refused_and_outside_it_teleop_chunks():
    """Each side is refused, counted, when not in charge; after the hand-back, chunks of older observations too."""
    controller = Controller(ARM7, ControllerConfig())
    run(controller, 0.01)
    chunk = lambda stamp: JointChunk(stamp, ("joint1",), np.array([0.5]), np.array([[0.1]]))  # noqa: E731
    with pytest.raises(ChunkRejected, match="outside an intervention"):
        controller.submit(chunk(0.01), 0.01, teleop=True)
    controller.set_intervention(True, 0.02)
    with pytest.raises(ChunkRejected, match="a person is driving"):
        controller.submit(chunk(0.02), 0.02)
    controller.submit(chunk(0.02), 0.02, teleop=True)
    controller.set_intervention(False, 0.5)
    with pytest.raises(ChunkRejected, match="before the person handed back"):
        controller.submit(chunk(0.45), 0.5)
    controller.submit(chunk(0.5), 0.5)
    assert controller.stats.chunks_rejected == 3 and controller.stats.chunks_accepted == 2


def test_an_intervention_leaves_the_e_stop_and_the_base_to_the_watchdog():
    """A latched e-stop refuses teleop chunks too; a takeover brakes a mobile base and refuses its chunks."""
    controller = Controller(ARM7, ControllerConfig())
    run(controller, 0.01)
    controller.estop("test")
    controller.set_intervention(True, 0.02)
    with pytest.raises(ChunkRejected, match="e-stop"):
        controller.submit(JointChunk(0.02, ("joint1",), np.array([0.5]), np.array([[0.1]])), 0.02, teleop=True)
    from vla_ros.control.chunk import BaseChunk

    mobile = Controller(load_embodiment("mobile_manipulator"), ControllerConfig())
    mobile.set_intervention(True, 0.0)
    with pytest.raises(ChunkRejected, match="a person is driving"):
        mobile.submit_base(BaseChunk(0.0, np.array([0.5]), np.array([[0.1, 0.0, 0.0]])), 0.0)
