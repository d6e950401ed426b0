"""DAgger takeovers: a policy drives a simulated episode until the scripted expert takes over.

Stand-in policies (holding still, closing the fingers far from the cube) trigger the takeovers a
model's mistakes would, repeatably; the shipped checkpoint is driven too, in-process.
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
from vla_ros.sim.takeover import STALL_S, TAKEOVER_RADIUS
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
