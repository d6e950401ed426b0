"""Demonstrations as bags: rosbag2 (MCAP) episodes that an independent reader opens.

Training samples carry the targets that really followed each frame.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader

from vla_ros.data.bag import BagError, EpisodeWriter, find_bags, read_episode, read_info, segments
from vla_ros.data.collect import Collector
from vla_ros.data.dataset import bag_recording, cached_samples, episode_samples
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.embodiment.goals import goal_frame_pose, goal_frames, goal_in_root, hindsight_goals
from vla_ros.sim.episode import observe
from vla_ros.sim.tasks import REACH_RADIUS, Reach


@pytest.fixture(scope="module")
def arm7():
    return load_embodiment("arm7")


@pytest.fixture(scope="module")
def recorded(arm7, tmp_path_factory):
    """Two arm7 reach episodes recorded by the scripted expert."""
    out = tmp_path_factory.mktemp("bags")
    collector = Collector(arm7)
    try:
        return [collector.record("reach", seed, out, phrasing="train") for seed in (3, 4)]
    finally:
        collector.close()


def test_an_episode_bag_holds_the_standard_topics_at_their_rates(recorded, arm7):
    episode = read_episode(recorded[0].path)
    assert recorded[0].result.success and episode.outcome["success"] is True
    span = episode.joint_states.times[-1] - episode.joint_states.times[0]
    assert span == pytest.approx(len(episode.joint_states.times) / arm7.control_rate_hz, abs=0.01)
    assert episode.joint_states.names == tuple(j.name for j in arm7.description.movable_joints)
    assert episode.commands.names == EmbodimentIO(arm7).joints
    for camera in arm7.cameras.values():
        times, frames = episode.images[camera.topic]
        assert frames.shape[1:] == (camera.height, camera.width, 3)
        assert np.median(np.diff(times)) == pytest.approx(1.0 / camera.rate_hz, abs=1e-3)
        assert frames[-1].std() > 10  # a rendered scene, not a blank frame
    (_, instruction), = episode.instructions
    colour = episode.outcome["task"].split(":")[1]
    assert instruction in [t.format(colour=colour) for t in Reach.phrasings["train"]]
    assert read_info(recorded[0].path)["embodiment"] == "arm7"


def test_the_bag_is_mcap_that_an_independent_reader_opens(recorded):
    bag = recorded[0].path
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in metadata["topics_with_message_count"]}
    with open(bag / metadata["relative_file_paths"][0], "rb") as file:
        reader = make_reader(file)
        summary = reader.get_summary()
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        schemas = {s.name for s in summary.schemas.values()}
        seen = {}
        for _, channel, message in reader.iter_messages():
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "vla/outcome":
                outcome = message.data
    assert {"sensor_msgs/msg/JointState", "sensor_msgs/msg/Image", "std_msgs/msg/String"} <= schemas
    assert seen == counts
    assert b'"success": true' in outcome


def test_samples_pair_each_frame_with_the_targets_that_followed(recorded, arm7):
    episode = read_episode(recorded[1].path)
    horizon, dt = 8, 0.05
    samples = episode_samples(episode, arm7, horizon, dt, (64, 64))
    frame_times = episode.images["camera/front/image_raw"][0]
    assert len(samples) == len(frame_times)
    assert samples.images["wrist"].shape == (len(samples), 64, 64, 3)
    i = len(samples) // 2
    t = frame_times[i]
    for k in (0, horizon - 1):
        row = np.argmin(np.abs(episode.commands.times - (t + (k + 1) * dt)))
        np.testing.assert_allclose(samples.actions[i, k], episode.commands.values[row], atol=2e-3)
    row = np.argmin(np.abs(episode.joint_states.times - t))
    np.testing.assert_allclose(samples.states[i, :7], episode.joint_states.values[row, :7], atol=2e-3)
    # Past the end of the episode the last target is held.
    np.testing.assert_allclose(samples.actions[-1, -1], episode.commands.values[-1], atol=1e-6)
    assert set(samples.instructions) == {episode.instructions[0][1]}


def test_the_hindsight_goal_is_the_named_cube_from_the_bag_alone(arm7, tmp_path):
    """Every sample's goal, from the bag's last commanded joints, lies at the cube the instruction named."""
    collector = Collector(arm7)
    try:
        recorded = collector.record("reach:green", 11, tmp_path)
        cubes = observe(collector.world).cubes  # in the robot's root frame, as the goal is
    finally:
        collector.close()
    samples = episode_samples(read_episode(recorded.path), arm7, 8, 0.05, (32, 32))
    assert recorded.result.success and samples.goals.shape == (len(samples), 3)
    assert np.ptp(samples.goals, axis=0).max() < 1e-6, "a reach has one keypose: its end"
    distances = {colour: float(np.linalg.norm(samples.goals[0] - cube)) for colour, cube in cubes.items()}
    assert distances["green"] < REACH_RADIUS, distances
    assert min(distances["red"], distances["blue"]) > REACH_RADIUS, distances
    goals, frames = hindsight_goals(samples.actions, arm7)
    np.testing.assert_allclose(goals, samples.goals)
    assert not frames.any(), "one arm: every goal is its tool's"


def test_a_humanoid_reaching_with_its_right_hand_has_goals_of_its_right_hand(tmp_path):
    """Two arms: the goal is where the hand that acts goes (the cube), seen from that hand, not the first arm's."""
    humanoid = load_embodiment("humanoid_upper")
    collector = Collector(humanoid)
    try:
        recorded = collector.record("reach:blue", 40035, tmp_path)  # the blue cube on the robot's right
        cube = observe(collector.world).cubes["blue"]
    finally:
        collector.close()
    samples = episode_samples(read_episode(recorded.path), humanoid, 8, 0.05, (32, 32))
    goals, frames = hindsight_goals(samples.actions, humanoid)
    assert recorded.result.success and goal_frames(humanoid)[frames[0]] == "right_hand_tcp" and len(set(frames)) == 1
    assert np.linalg.norm(goals[0] - cube) < REACH_RADIUS, (goals[0], cube)
    io = EmbodimentIO(humanoid)
    right = goal_frame_pose(samples.states[0], humanoid, io, "right_hand_tcp")
    np.testing.assert_allclose(right[:3, :3] @ samples.tool_goals[0] + right[:3, 3], goals[0], atol=1e-5)


def test_pick_and_place_goals_are_the_grasp_then_the_release_then_the_end(arm7, tmp_path):
    """Samples before the grasp aim at the cube, those carrying it at the tray, the last ones at the end."""
    collector = Collector(arm7)
    try:
        recorded = collector.record("pick_place:red:tray", 5, tmp_path)
        collector.world.reset(5)  # the scene as the episode began
        scene = observe(collector.world)
        cube = scene.cubes["red"]
    finally:
        collector.close()
    samples = episode_samples(read_episode(recorded.path), arm7, 8, 0.05, (32, 32))
    tray = scene.places["tray"]
    assert recorded.result.success
    first, middle = samples.goals[0], samples.goals[len(samples) // 2]
    assert np.linalg.norm(first[:2] - cube[:2]) < 0.03, "before the grasp: where the cube was picked from"
    assert np.linalg.norm(middle[:2] - tray[:2]) < 0.04, "carrying: where it is let go, over the tray"
    assert len({tuple(g) for g in np.round(samples.goals, 4)}) == 3
    # Seen from the tool: the same goals, and near zero where the fingers close on the cube.
    for goal, seen, state in zip(samples.goals, samples.tool_goals, samples.states):
        np.testing.assert_allclose(goal_in_root(seen, state, arm7, EmbodimentIO(arm7)), goal, atol=1e-5)
    grasp = int(np.argmax(samples.states[:, -1] < samples.states[0, -1] - 0.01))  # the fingers close
    assert np.linalg.norm(samples.tool_goals[grasp - 1]) < 0.02, samples.tool_goals[grasp - 1]
    assert np.linalg.norm(samples.tool_goals[0]) > 0.1, "at home the cube is far from the tool"


def test_a_change_of_mind_turns_the_expert_and_training_keeps_only_the_frames_after_it(arm7, tmp_path):
    """With a switch the expert turns to the second cube, and the samples start at the change.

    The instruction names another cube partway there: the expert turns away from the first cube to
    the second, and the samples (with a goal at the second cube) start at the change.
    """
    collector = Collector(arm7)
    tools = []
    try:
        recorded = collector.record("reach:red", 21, tmp_path, switch_fraction=1.0)
        cubes = observe(collector.world).cubes
    finally:
        collector.close()
    episode = read_episode(recorded.path)
    switched = episode.outcome["switched"]
    (_, first), (at, second) = episode.instructions
    assert switched["from"] == "reach:red" and switched["to"] != "reach:red" and switched["at_s"] == pytest.approx(at,
                                                                                                                   abs=0.005)
    colour = switched["to"].split(":")[1]
    assert colour in second and "red" in first and recorded.path.name.startswith(f"arm7-reach-red-then-{colour}-")
    assert recorded.result.success and recorded.result.task == switched["to"]
    assert episode.outcome["instruction"] == second
    io = EmbodimentIO(arm7)
    kinematics = arm7.kinematics
    frame = arm7.groups["arm"].ee_frame
    for row in episode.joint_states.values[:, [episode.joint_states.names.index(j) for j in io.joints[:7]]]:
        q = np.zeros(len(kinematics.joint_names))
        q[kinematics.index(io.joints[:7])] = row
        tools.append(kinematics.frame_pose(q, frame)[:3, 3])
    tools = np.array(tools)
    to_red = np.linalg.norm(tools - cubes["red"], axis=1)
    change = int(np.searchsorted(episode.joint_states.times, at))
    assert to_red[change] < to_red[0] - 0.02, "the switch came before the arm set off for the first cube"
    assert to_red[-1] > to_red[change] + 0.02, "the arm did not turn away from the first cube"

    samples = episode_samples(episode, arm7, 8, 0.05, (32, 32))
    frames = episode.images[arm7.cameras["front"].topic][0]
    assert set(samples.instructions) == {second}
    assert len(samples) == int(np.sum(frames >= at - 1e-9)) < len(frames)
    assert np.linalg.norm(samples.goals[0] - cubes[colour]) < REACH_RADIUS


def test_a_near_miss_start_puts_the_arm_low_beside_the_cube_and_the_expert_goes_on_from_there(arm7, tmp_path):
    """A near-miss episode starts at rest where a policy that stops short would be.

    Low over the table, 4-12 cm beside the named cube, touching nothing; the expert then reaches it.
    """
    collector = Collector(arm7)
    try:
        recorded = collector.record("reach:green", 31, tmp_path, near_miss_fraction=1.0)
        cubes = observe(collector.world).cubes
        home = Collector(arm7)
        try:
            straight = home.record("reach:green", 31, tmp_path / "straight")
        finally:
            home.close()
    finally:
        collector.close()
    episode = read_episode(recorded.path, cameras=False)
    offset = np.array(episode.outcome["near_miss"]["offset_m"])
    assert recorded.path.name == "arm7-reach-green-near-s000031" and recorded.result.success
    assert 0.04 <= np.linalg.norm(offset[:2]) <= 0.12 and 0.0 <= offset[2] <= 0.06
    reach = cubes["green"] + np.array([0.0, 0.0, 0.03])
    assert np.linalg.norm(_tool_at(episode, arm7, 0) - (reach + offset)) < 0.01, "not started where the miss was drawn"
    assert np.linalg.norm(_tool_at(episode, arm7, 0) - _tool_at(episode, arm7, 10)) < 0.005, "not at rest at the start"
    home = read_episode(straight.path, cameras=False)
    assert "near_miss" not in home.outcome and np.linalg.norm(_tool_at(home, arm7, 0) - reach) > 0.15


def test_a_pick_can_start_beside_its_cube_too(arm7, tmp_path):
    """Grasping tasks take near-miss starts: the expert goes up, over and down onto the cube from there."""
    collector = Collector(arm7)
    try:
        recorded = collector.record("pick:blue", 501, tmp_path, max_seconds=15.0, near_miss_fraction=1.0)
    finally:
        collector.close()
    episode = read_episode(recorded.path, cameras=False)
    assert recorded.path.name == "arm7-pick-blue-near-s000501" and recorded.result.success
    assert 0.04 <= np.linalg.norm(episode.outcome["near_miss"]["offset_m"][:2]) <= 0.12


def _tool_at(episode, embodiment, index):
    """The arm's tool position (root frame) at the episode's index-th joint state."""
    io = EmbodimentIO(embodiment)
    q = np.zeros(len(embodiment.kinematics.joint_names))
    q[embodiment.kinematics.index(io.joints[:7])] = episode.joint_states.values[
        index, [episode.joint_states.names.index(j) for j in io.joints[:7]]]
    return embodiment.kinematics.frame_pose(q, embodiment.groups["arm"].ee_frame)[:3, 3]


def test_the_sample_cache_hits_for_the_same_bag_and_settings_only(recorded, arm7, tmp_path):
    bag = recorded[0].path
    first = cached_samples(bag_recording(bag, tmp_path), arm7, 8, 0.05, (32, 32))
    again = cached_samples(bag_recording(bag, tmp_path), arm7, 8, 0.05, (32, 32))
    np.testing.assert_array_equal(first.actions, again.actions)
    np.testing.assert_array_equal(first.images["front"], again.images["front"])
    assert again.instructions == first.instructions and again.success
    assert len(list(tmp_path.glob("*.npz"))) == 1
    cached_samples(bag_recording(bag, tmp_path), arm7, 4, 0.05, (32, 32))
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_a_mobile_base_episode_records_odom_and_cmd_vel(tmp_path):
    embodiment = load_embodiment("mobile_manipulator")
    collector = Collector(embodiment)
    try:
        recorded = collector.record("reach", 0, tmp_path, max_seconds=1.0, linger_s=0.0)
    finally:
        collector.close()
    episode = read_episode(recorded.path)
    assert episode.base_velocity is not None and episode.base_commands is not None
    samples = episode_samples(episode, embodiment, 4, 0.05, (32, 32))
    io = EmbodimentIO(embodiment)
    assert samples.states.shape[1] == samples.actions.shape[2] == io.size
    assert io.base is not None


def test_bags_that_are_not_episodes_are_refused_clearly(tmp_path, arm7):
    with pytest.raises(BagError, match="no bags"):
        find_bags([tmp_path])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    with pytest.raises(BagError, match="not a readable episode bag"):
        read_episode(tmp_path / "junk")
    writer = EpisodeWriter(tmp_path / "partial", {}, False, {"embodiment": "arm7"})
    writer.joint_state(0.0, ["joint1"], [0.0])
    writer.commands(0.0, ["joint1"], [0.0], [0.0])
    writer.abort()
    with pytest.raises(BagError, match="no images on camera/front/image_raw"):
        episode_samples(read_episode(tmp_path / "partial"), load_embodiment("arm7"), 4, 0.05, (32, 32))
    with pytest.raises(BagError, match="exists already"):
        EpisodeWriter(tmp_path / "partial", {}, False, {})


@pytest.mark.slow
def test_collect_cli_writes_bags_and_a_summary(tmp_path):
    out = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "vla_ros.cli", "collect", "--embodiment", "arm7", "--task",
                           "reach:blue",
                           "--episodes", "2", "--seed", "7", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    bags = find_bags([out])
    assert [b.name for b in bags] == ["arm7-reach-blue-s000007", "arm7-reach-blue-s000008"]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / bags[1].name).symlink_to(bags[1])
    (linked / "loop").symlink_to(linked)
    assert find_bags([linked]) == [linked / bags[1].name]
    summary = json.loads((out / "collect-arm7-s7.json").read_text())
    assert summary["tasks"]["reach:blue"] == {"episodes": 2, "successes": 2}
    again = subprocess.run([sys.executable, "-m", "vla_ros.cli", "collect", "--embodiment", "arm7", "--task",
                            "reach:blue",
                            "--episodes", "1", "--seed", "7", "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "exists already" in again.stderr
    wrong = subprocess.run([sys.executable, "-m", "vla_ros.cli", "collect", "--embodiment", "arm7", "--task", "raech",
                            "--episodes", "1", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "no task 'raech'" in wrong.stderr
    for task, option, fraction, message in (
            ("reach", "--switch", "1.5", "--switch is a fraction of the episodes, 0 to 1, got 1.5"),
            ("push", "--switch", "0.5", "task 'push' cannot switch cubes mid-episode"),
            ("reach", "--near-miss", "-0.1", "--near-miss is a fraction of the episodes, 0 to 1, got -0.1"),
            ("push", "--near-miss", "1", "task 'push' has no near-miss start"),
            ("reach", "--takeover", "arm7", "--takeover: task 'reach' has no takeover"),
            ("pick", "--own-grasp", "1.2", "--own-grasp is a fraction of the episodes, 0 to 1, got 1.2"),
            ("pick", "--own-grasp", "0.5", "--own-grasp needs --takeover CHECKPOINT")):
        refused = subprocess.run([sys.executable, "-m", "vla_ros.cli", "collect", "--embodiment", "arm7", "--task",
                                  task,
                                  "--episodes", "1", "--seed", "9", option, fraction, "--out", str(out)],
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr


def test_intervention_segments_pair_each_takeover_with_its_hand_back():
    """Repeats change nothing; a takeover never handed back lasts to the episode's end."""
    switches = [(1.0, True), (1.5, True), (2.0, False), (2.5, False), (3.0, True)]
    assert segments(switches, 4.0) == [(1.0, 2.0), (3.0, 4.0)]
    assert segments([(2.0, False)], 4.0) == []
