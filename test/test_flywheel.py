"""Learning from deployment: the samples each flywheel source makes of a recorded episode, and train --flywheel.

The episodes are written here as recorder_node writes them (the bag's topics, the outcome with its
intervention segments, the cubes on sim/objects), with a motion the test chooses: the arm goes
to the blue cube while the instruction asks for the red one.
"""
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose
from rclpy.serialization import serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from vla_ros.cli import main
from vla_ros.data.bag import OBJECTS, EpisodeWriter, read_episode, read_info
from vla_ros.data.dataset import episode_samples
from vla_ros.data.flywheel import SOURCES, deployment_pieces, is_deployment, parse_sources
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.errors import VlaRosError

ARM7 = load_embodiment("arm7")
IO = EmbodimentIO(ARM7)
HORIZON, DT = 4, 0.1
FRAME_S = 0.1


def tool_at(q_layout: np.ndarray) -> np.ndarray:
    return ARM7.kinematics.frame_pose(IO.joint_vector(q_layout), ARM7.groups["arm"].ee_frame)[:3, 3]


def markers(cubes: dict[str, np.ndarray], seconds: float) -> bytes:
    stamp = Time(sec=int(seconds), nanosec=int((seconds % 1) * 1e9))
    return serialize_message(MarkerArray(markers=[
        Marker(header=Header(stamp=stamp, frame_id="base_link"), ns="cubes", id=k, text=f"{colour}_cube",
               pose=Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))))
        for k, (colour, p) in enumerate(cubes.items())]))


def deployment_bag(path, interventions=(), corrections=(), success=False):
    """4 s: the arm moves from home onto the blue cube by 2 s and stays; the instruction names the red one.

    `interventions`: (start, end) [s] a person drove; `corrections`: (seconds, text).
    """
    home = IO.home.copy()
    reached = home.copy()
    reached[:7] += np.array([0.4, 0.3, 0.0, -0.3, 0.0, 0.2, 0.0])
    cubes = {"blue": tool_at(reached), "red": tool_at(reached) + np.array([0.0, -0.3, 0.0]),
             "green": tool_at(reached) + np.array([0.0, 0.3, 0.0])}
    cameras = {name: camera.topic for name, camera in ARM7.cameras.items()}
    writer = EpisodeWriter(path, cameras, False, {"embodiment": "arm7", "instruction": "reach the red cube"})
    writer.instruction(0.0, "reach the red cube")
    switches = sorted([(s, True) for s, _ in interventions] + [(e, False) for _, e in interventions])
    for step in range(2001):
        now = step * 0.002
        q = home + (reached - home) * min(now / 2.0, 1.0)
        writer.joint_state(now, IO.joints, q, np.zeros(len(q)))
        writer.commands(now, IO.joints, home + (reached - home) * min((now + 0.05) / 2.0, 1.0), np.zeros(len(q)))
        if step % 50 == 0:
            for topic in cameras.values():
                writer.image(topic.split("/")[1], now, np.full((32, 32, 3), step % 256, np.uint8), "camera")
            writer.serialized(OBJECTS, "visualization_msgs/msg/MarkerArray", now, markers(cubes, now))
        while switches and switches[0][0] <= now:
            writer.intervention(now, switches.pop(0)[1])
        for seconds, text in corrections:
            if abs(seconds - now) < 1e-9:
                writer.correction(now, text)
    writer.finish(4.0, {"success": success, "finished_by": "~/finish", "corrections": [t for _, t in corrections],
                        "interventions": [list(s) for s in interventions], "seconds": 4.0})
    return path


def pieces(path, sources):
    episode = read_episode(path)
    samples = episode_samples(episode, ARM7, HORIZON, DT, (32, 32))
    return deployment_pieces(read_episode(path, cameras=False), samples, ARM7, HORIZON, DT, sources)


def test_the_cube_reached_instead_of_the_one_asked_for_relabels_the_samples(tmp_path):
    """Told red, the arm rests at blue: its samples up to the dwell say "reach the blue cube", none says red."""
    found = pieces(deployment_bag(tmp_path / "wrong"), SOURCES)
    assert [(p.task, set(p.instructions)) for p in found] == [("reach:blue", {"reach the blue cube"})]
    relabelled = found[0]
    assert relabelled.times[0] == pytest.approx(0.0, abs=FRAME_S) and relabelled.times[-1] < 3.0
    assert relabelled.success and len(relabelled.goals) == len(relabelled)
    assert np.linalg.norm(relabelled.goals[0] - relabelled.goals[-1]) < 0.01, "the goal: where it came to rest"
    assert not [p for p in pieces(tmp_path / "wrong", ("outcomes", "interventions", "corrections")) if len(p)], \
        "a failure without a person or a word gives nothing else"


def test_a_takeover_with_a_correction_gives_the_persons_samples_and_the_corrections_words(tmp_path):
    """The person's stretch under the instruction in force, and again under the correction said at its start."""
    bag = deployment_bag(tmp_path / "helped", interventions=[(2.5, 4.0)], corrections=[(2.5, "no, the red one")],
                         success=True)
    assert is_deployment(read_info(bag))
    found = {source: pieces(bag, (source,)) for source in SOURCES}
    [person] = found["interventions"]
    assert person.instructions[0] == "reach the red cube" and person.task == "reach:red"
    assert person.times.min() >= 2.5 and person.times.max() + HORIZON * DT <= 4.0
    [said] = found["corrections"]
    assert set(said.instructions) == {"no, the red one"} and said.task == "reach:red"
    assert said.times.min() >= 2.5
    [own] = found["outcomes"]
    assert np.all(own.times >= 4.0), "the policy's own count after the hand-back only"
    [relabelled] = found["relabel"]
    assert relabelled.instructions[0] == "reach the blue cube"


def test_unknown_sources_are_named_with_a_suggestion():
    assert parse_sources("all") == SOURCES and parse_sources("relabel, outcomes") == ("relabel", "outcomes")
    with pytest.raises(VlaRosError, match="no flywheel source 'relable' \\(did you mean 'relabel'\\?\\)"):
        parse_sources("relable")


def test_train_flywheel_learns_from_a_deployment_episode_and_says_so(tmp_path, capsys):
    """A tiny run: the deployment episode's pieces are the training samples, counted in the summary."""
    deployment_bag(tmp_path / "data" / "ep1", interventions=[(2.5, 4.0)], corrections=[(2.5, "no, the red one")])
    out = tmp_path / "model"
    code = main(["train", "--data", str(tmp_path / "data"), "--out", str(out), "--image-size", "32", "--batch-size",
                 "4", "--steps", "2", "--validation", "0", "--horizon", str(HORIZON), "--dt", str(DT),
                 "--flywheel", "all"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "config.json").read_text())["training"]
    assert summary["flywheel"] == {"sources": list(SOURCES), "deployment_episodes": 1}
    assert set(summary["instructions"]) == {"reach the red cube", "reach the blue cube", "no, the red one"}
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "plain"), "--steps", "2"]) == 2
    assert "no successful episodes" in capsys.readouterr().err, "without --flywheel a failed episode is left out"


def test_the_flywheel_bench_counts_the_operators_time_from_the_recorded_outcomes(tmp_path):
    """Seconds driven, takeovers, corrections and their words, labelled episodes: what the comparison charges."""
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "flywheel.py"), run_name="bench")
    deployment_bag(tmp_path / "d" / "ep1", interventions=[(2.5, 4.0)], corrections=[(2.5, "no, the red one")])
    deployment_bag(tmp_path / "d" / "ep2", success=True)
    assert bench["operator_time"](tmp_path / "d") == {"episodes": 2, "labelled": 2, "takeovers": 1, "takeover_s": 1.5,
                                                      "corrections": 1, "correction_words": 4}
    assert bench["mean_length"](tmp_path / "d") == pytest.approx(4.0, abs=0.01)
