"""DAgger takeovers: a policy drives a simulated episode until the scripted expert takes over.

Stand-in policies (holding still, closing the fingers far from the cube) trigger the takeovers a
model's mistakes would, repeatably; the shipped checkpoint is driven too, in-process. The rules
for a model left to grasp itself are checked against a stand-in task whose physics the test sets.
"""
import numpy as np
import pytest

from vla_ros.data.bag import read_episode
from vla_ros.data.collect import Collector
from vla_ros.data.dataset import episode_samples
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.embodiment.ik import TOOL_DOWN, ArmIK
from vla_ros.policy.builtin import BuiltinPolicy
from vla_ros.policy.driven import PolicyChunks
from vla_ros.policy.hold import HoldPolicy
from vla_ros.sim.episode import observe, run_expert, start_episode
from vla_ros.sim.expert import APPROACH_HEIGHT, DIRECT_REACH
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.takeover import MISS_S, OWN_CLOSE, RELEASE_RADIUS, STALL_S, TAKEOVER_RADIUS, _Watch
from vla_ros.sim.tasks import GRASPED_HEIGHT
from vla_ros.sim.world import World


@pytest.fixture(scope="module")
def arm7():
    return load_embodiment("arm7")


class Closer(HoldPolicy):
    """Holds the arm where it is, the fingers open for the first chunk and closing from the second."""

    def __init__(self, embodiment):
        super().__init__(embodiment, chunk_length=16, dt=0.05)
        self.finger = self.io.names.index("finger_joint")
        self.chunks = 0

    def infer(self, observation, prefix=None):
        chunk = super().infer(observation, prefix)
        chunk.actions[:, self.finger] = 0.04 if self.chunks == 0 else 0.0
        self.chunks += 1
        return chunk


def _record(embodiment, policy, spec, seed, out):
    collector = Collector(embodiment, PolicyChunks(policy, embodiment))
    try:
        return collector.record(spec, seed, out, max_seconds=15.0)
    finally:
        collector.close()


def _tool(embodiment, episode, index):
    io = EmbodimentIO(embodiment)
    q = np.zeros(len(embodiment.kinematics.joint_names))
    columns = [episode.joint_states.names.index(j) for j in io.joints]
    q[embodiment.kinematics.index(io.joints)] = episode.joint_states.values[index, columns]
    return ArmIK.for_group(embodiment, embodiment.groups["arm"]).pose(q)[:3, 3]


def test_a_policy_that_stands_still_is_taken_over_and_only_the_expert_is_recorded(arm7, tmp_path):
    """The bag starts at the takeover; its samples are the expert's, under the recorded instruction."""
    recorded = _record(arm7, HoldPolicy(arm7, chunk_length=16, dt=0.05), "pick:blue", 501, tmp_path)
    assert recorded.handover.reason == "stalled" and recorded.handover.seconds >= STALL_S
    assert recorded.result.success, "the expert did not finish from where the policy left the arm"
    assert recorded.path.name == "arm7-pick-blue-takeover-s000501"
    episode = read_episode(recorded.path)
    assert episode.outcome["takeover"]["reason"] == "stalled"
    recorded_s = episode.joint_states.times[-1] - episode.joint_states.times[0]
    assert recorded_s == pytest.approx(recorded.result.seconds + 1.0 - recorded.handover.seconds, abs=0.01), \
        "the bag does not start at the takeover"
    samples = episode_samples(episode, arm7, 16, 0.05, (32, 32))
    assert len(samples) > 0 and set(samples.instructions) == {recorded.instruction} and samples.success


def test_fingers_closing_away_from_the_cube_hand_over_at_once(arm7, tmp_path):
    """Closing far from the cube, once open, is a takeover at once; the expert opens them and goes on."""
    recorded = _record(arm7, Closer(arm7), "pick_place:red:tray", 502, tmp_path)
    assert recorded.handover.reason == "closing" and recorded.handover.distance_m > TAKEOVER_RADIUS[1]
    assert recorded.handover.seconds < STALL_S, "taken over for standing still, not for closing"
    assert recorded.result.success


def test_the_expert_taking_over_low_beside_the_cube_goes_straight_to_the_grasp(arm7):
    """Not up over the cube and down again: the open fingers are just over it already."""
    world = World(arm7)
    hardware = SimHardware(world)
    task = start_episode(world, hardware, "pick:green", 503)
    cube = world.cube_pose("green")[0]
    assert world.pose_arm(world.reaching_arm(cube), cube + np.array([0.6 * DIRECT_REACH, 0.0, 0.03]))
    start = observe(world)
    ik = ArmIK.for_group(arm7, arm7.groups["arm"])
    heights = []
    result = run_expert(world, hardware, task, 15.0, lambda w, t, s: heights.append(ik.pose(w.joint_vector())[2, 3]))
    assert result.success
    grasped_at = int(np.argmin(heights))  # the lowest the tool went: where the fingers closed
    assert heights[grasped_at] < start.cubes["green"][2] + 0.01
    assert max(heights[:grasped_at]) < ik.pose(start.q)[2, 3] + 0.01 < start.cubes["green"][2] + APPROACH_HEIGHT, \
        "the tool went up over the cube first"
    assert np.allclose(ik.pose(start.q)[:3, 2], TOOL_DOWN, atol=0.1)


@pytest.mark.slow
def test_the_shipped_model_drives_until_it_nears_the_cube_then_the_expert_grasps(arm7, tmp_path):
    """The shipped checkpoint, driven in-process, hands over away from home; the expert succeeds from there."""
    policy = BuiltinPolicy(arm7, "arm7")
    recorded = _record(arm7, policy, "pick:blue", 50003, tmp_path)
    assert recorded.handover.reason in ("near", "closing") and recorded.handover.distance_m < 0.1
    assert recorded.result.success
    episode = read_episode(recorded.path, cameras=False)
    assert episode.outcome["takeover"]["tool_to_grasp_m"] == pytest.approx(recorded.handover.distance_m, abs=1e-4)
    home = Collector(arm7)
    try:
        straight = home.record("pick:blue", 50003, tmp_path / "straight", max_seconds=15.0)
    finally:
        home.close()
    first = read_episode(straight.path, cameras=False)
    assert np.linalg.norm(_tool(arm7, episode, 0) - _tool(arm7, first, 0)) > 0.1, "recorded from home, not the takeover"


class _Lifted(Exception):
    """Stops an expert episode once the cube is in the air."""


def test_the_expert_taking_over_with_the_cube_in_hand_carries_it_on(arm7):
    """No new grasp: the fingers stay closed and the cube stays up until it is over the tray."""
    world = World(arm7)
    hardware = SimHardware(world)
    task = start_episode(world, hardware, "pick_place:red:tray", 504)

    def stop_when_lifted(world, targets, status):
        if task.lifted("red") > 0.06:
            raise _Lifted

    with pytest.raises(_Lifted):
        run_expert(world, hardware, task, 15.0, stop_when_lifted)
    carried = []

    def watch(world, targets, status):
        cube = world.cube_pose("red")[0]
        carried.append((task.lifted("red"), float(np.linalg.norm(cube[:2] - world.tray[:2])),
                        float(targets.joints["gripper"][0][0])))

    result = run_expert(world, hardware, task, world.data.time + 15.0, watch)
    assert result.success
    lifted, to_tray, fingers = np.array(carried).T
    over_tray = int(np.argmax(to_tray < RELEASE_RADIUS))
    assert over_tray > 0 and np.all(lifted[:over_tray] > GRASPED_HEIGHT), "the cube was set down on the way"
    opened, closed = arm7.groups["gripper"].grip_range()
    assert fingers[0] == pytest.approx(closed[0]) and np.all(fingers[:over_tray] == fingers[0]), \
        "the fingers opened before the tray"


class _Physics:
    """A stand-in task: the cube's height, contact, place and speed as the test sets them."""

    def __init__(self, destination):
        self.target, self.goal = "red", destination
        self.height, self.touching, self.position, self.speed = 0.0, False, np.zeros(3), 0.0
        self.world = self

    def lifted(self, colour):
        return self.height

    def touching_robot(self, colour):
        return self.touching

    def cube_pose(self, colour):
        return self.position, np.array([1.0, 0.0, 0.0, 0.0])

    def cube_velocity(self, colour):
        return np.array([self.speed, 0.0, 0.0])

    def destination(self):
        return self.goal

    def at_goal(self, position):
        return self.goal is not None and np.linalg.norm(position - self.goal) < 0.01


def _watch(physics):
    return _Watch(physics, radius=0.03, own_grasp=True, start=0.0, drive_s=10.0)


def _moving(watch, now, distance, closing, succeeded=False):
    """One period with the tool moving (no stall)."""
    return watch.check(now, np.array([now, 0.0, 0.0]), distance, closing, succeeded)


def test_a_model_grasping_itself_may_close_near_the_cube_and_is_taken_over_when_that_misses():
    """Near: no `near` takeover and a close gets MISS_S to lift the cube; a close farther away hands over."""
    physics = _Physics(np.array([0.5, 0.0, 0.0]))
    watch = _watch(physics)
    assert _moving(watch, 0.1, 0.01, 0.0) is None, "taken over near the cube"
    assert _moving(watch, 0.2, 0.01, 1.0) is None
    assert _moving(watch, 0.2 + MISS_S / 2, 0.01, 1.0) is None
    assert _moving(watch, 0.3 + MISS_S, 0.01, 1.0) == "missed"
    far = _watch(physics)
    assert _moving(far, 0.1, OWN_CLOSE + 0.01, 0.0) is None
    assert _moving(far, 0.2, OWN_CLOSE + 0.01, 1.0) == "closing"


def test_a_model_holding_the_cube_is_taken_over_when_it_lets_go_away_from_where_it_goes():
    """Opening the fingers away from the tray hands over; over the tray it is the model's own place."""
    physics = _Physics(np.array([0.5, 0.0, 0.0]))
    watch = _watch(physics)
    _moving(watch, 0.1, 0.01, 0.0)
    physics.height, physics.touching = 0.05, True
    assert _moving(watch, 0.2, 0.0, 1.0) is None
    assert _moving(watch, 0.3, 0.0, 0.5) == "released"
    watch = _watch(physics)
    _moving(watch, 0.1, 0.01, 0.0)
    assert _moving(watch, 0.2, 0.0, 1.0) is None
    physics.position = np.array([0.5 + RELEASE_RADIUS / 2, 0.0, 0.0])
    assert _moving(watch, 0.3, 0.0, 0.5) is None, "taken over when letting go over the tray"
    physics.touching = False
    assert _moving(watch, 0.4, 0.05, 0.0) is None
    assert _moving(watch, 0.5, 0.05, 0.0, succeeded=True) == "succeeded"


def test_a_pick_that_lets_go_anywhere_is_taken_over_and_a_slipped_cube_once_it_rests():
    """A pick has nowhere to let go; a cube out of the closed fingers is handed over only when still."""
    physics = _Physics(None)
    watch = _watch(physics)
    physics.height, physics.touching = 0.05, True
    assert _moving(watch, 0.1, 0.0, 1.0) is None
    assert _moving(watch, 0.2, 0.0, 0.5) == "released"
    watch = _watch(physics)
    assert _moving(watch, 0.1, 0.0, 1.0) is None
    physics.touching, physics.speed = False, 0.5
    assert _moving(watch, 0.2, 0.03, 1.0) is None, "handed over while the cube falls"
    physics.speed = 0.0
    assert _moving(watch, 0.3, 0.05, 1.0) == "dropped"


def test_a_tool_that_comes_down_and_goes_back_up_has_not_stalled():
    """Stalled is staying put, not ending where the tool was a second ago."""
    watch = _Watch(_Physics(None), radius=0.0, own_grasp=False, start=0.0, drive_s=10.0)
    heights = np.concatenate([np.linspace(0.1, 0.05, 60), np.linspace(0.05, 0.1, 60)])
    for step, z in enumerate(heights):
        assert watch.check(0.01 * step, np.array([0.0, 0.0, z]), 0.1, 0.0, False) is None
    for step in range(120, 240):
        reason = watch.check(0.01 * step, np.array([0.0, 0.0, 0.1]), 0.1, 0.0, False)
    assert reason == "stalled"


@pytest.mark.slow
def test_the_shipped_model_grasping_itself_lets_go_and_the_expert_goes_on_with_the_cube_in_hand(arm7, tmp_path):
    """Own grasp: the model lifts the cube, opens its fingers; the recording starts with them closed on it."""
    collector = Collector(arm7, PolicyChunks(BuiltinPolicy(arm7, "arm7"), arm7), drive_s=12.0, own_grasp=1.0)
    try:
        recorded = collector.record("pick", 60005, tmp_path, max_seconds=20.0)
    finally:
        collector.close()
    assert recorded.handover.reason == "released" and recorded.handover.own_grasp
    assert recorded.result.success
    episode = read_episode(recorded.path, cameras=False)
    assert episode.outcome["takeover"]["own_grasp"] is True
    finger = episode.commands.names.index("finger_joint")
    _, closed = arm7.groups["gripper"].grip_range()
    assert episode.commands.values[0, finger] == pytest.approx(closed[0]), "the expert opened the fingers first"
