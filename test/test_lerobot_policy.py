"""The `lerobot` backend on a tiny ACT checkpoint: in LeRobot's venv, and from the main venv through a child."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_ros.embodiment import load_embodiment
from vla_ros.policy import Observation, PolicyError, make_policy

ROOT = Path(__file__).resolve().parents[1]
LEROBOT_PYTHON = ROOT / ".venv-lerobot" / "bin" / "python"
OFFLINE = {"HF_HUB_OFFLINE": "1"}  # nothing here may reach the hub: the checkpoint is local, the backbone untrained

pytestmark = [
    pytest.mark.skipif(not LEROBOT_PYTHON.exists(), reason=f"no LeRobot venv at {LEROBOT_PYTHON}: make lerobot-setup"),
    pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None,
                       reason="these tests drive LeRobot from a Python without it (the main venv)"),
    pytest.mark.slow,  # every test starts LeRobot's python
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The checkpoint and the answers test/lerobot_fixture.py computed in LeRobot's venv."""
    out = tmp_path_factory.mktemp("lerobot")
    result = subprocess.run([str(LEROBOT_PYTHON), str(ROOT / "test" / "lerobot_fixture.py"), str(out)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE})
    assert result.returncode == 0, result.stderr
    with np.load(out / "answers.npz") as answers:
        return out / "checkpoint", dict(answers)


def observation(answers: dict) -> Observation:
    return Observation({camera: answers[f"image_{camera}"] for camera in ("front", "wrist")}, answers["state"],
                       str(answers["instruction"]), float(answers["stamp"]))


def test_in_process_chunk_is_lerobots_own_with_names_and_fps_from_the_dataset(built):
    """In LeRobot's venv: the chunk LeRobot itself gives, reordered by the dataset's names; dt from its fps."""
    _, answers = built
    assert answers["chunk"].shape == (8, 8) and answers["chunk"].dtype == np.float32
    np.testing.assert_allclose(answers["chunk"], answers["by_hand"], atol=1e-6)
    assert float(answers["dt"]) == pytest.approx(0.1) and float(answers["stamp_out"]) == float(answers["stamp"])


def test_main_venv_serves_it_from_a_lerobot_child_with_the_same_chunk(built, monkeypatch):
    """From the main venv, `python=` runs `vla-ros serve --backend lerobot` there; same chunk; close() ends it."""
    checkpoint, answers = built
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    policy = make_policy("lerobot", load_embodiment("arm7"), {"checkpoint": str(checkpoint),
                                                              "python": str(LEROBOT_PYTHON)})
    child = policy.runner.child
    try:
        metadata = policy.metadata
        assert (metadata["backend"], metadata["policy_type"], metadata["chunk_length"]) == ("lerobot", "act", 8)
        assert metadata["cameras"] == {"front": [64, 64, 3], "wrist": [64, 64, 3]}
        chunk = policy.infer(observation(answers))
        np.testing.assert_allclose(chunk.actions, answers["chunk"], atol=1e-5)
        assert chunk.dt == pytest.approx(0.1) and chunk.stamp == float(answers["stamp"])
        policy.reset()
        np.testing.assert_allclose(policy.infer(observation(answers)).actions, answers["chunk"], atol=1e-5)
    finally:
        policy.close()
    assert child.poll() is not None


def test_checkpoints_that_do_not_fit_are_refused_naming_the_features(built):
    """arm7's checkpoint for humanoid_upper, or a camera mapped to no input: one error naming the features."""
    _, answers = built
    humanoid = str(answers["error_humanoid"])
    for feature in ("observation.state", "observation.images.front", "observation.images.wrist", "action"):
        assert feature in humanoid
    assert "humanoid_upper does not fit the act checkpoint" in humanoid
    camera = str(answers["error_camera"])
    assert "cameras maps 'front' to 'observation.images.nope'" in camera and "observation.images.front" in camera


def test_not_a_checkpoint_makes_serve_exit_2_with_one_line(tmp_path):
    """`vla-ros serve --backend lerobot` on a directory that is no checkpoint: exit 2, one line, no traceback."""
    result = subprocess.run([str(LEROBOT_PYTHON), "-m", "vla_ros.cli", "serve", "--backend", "lerobot", "--param",
                             f"checkpoint={tmp_path}", "--port", "0"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **OFFLINE})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"vla-ros serve: lerobot: {tmp_path} is not a LeRobot checkpoint (no "
                                          "config.json in it): give the pretrained_model directory LeRobot saves "
                                          "(outputs/train/RUN/checkpoints/last/pretrained_model)"]


def test_a_child_that_stops_gives_its_own_error_and_never_spawns_in_turn(built, monkeypatch):
    """A `python` without LeRobot: the child's one-line error comes back; it ignores VLA_ROS_LEROBOT_PYTHON."""
    checkpoint, _ = built
    monkeypatch.setenv("VLA_ROS_LEROBOT_PYTHON", sys.executable)
    message = f"^lerobot: LeRobot is not installed in {re.escape(sys.executable)}: run `make lerobot-setup`"
    with pytest.raises(PolicyError, match=message):
        make_policy("lerobot", load_embodiment("arm7"), {"checkpoint": str(checkpoint)})


def test_eval_drives_the_simulated_arm_with_it_through_the_ros_graph(built, ros, tmp_path):
    """`vla-ros eval --policy lerobot` from the main venv, through sim, controller and policy nodes.

    policy_node's backend serves the checkpoint from a LeRobot child; the model is untrained, so no
    success is asked of it, only chunks.
    """
    checkpoint, _ = built
    out = tmp_path / "eval.json"
    run = ros.start([sys.executable, "-m", "vla_ros.cli", "eval", "--policy", "lerobot", "--policy-param",
                     f"checkpoint={checkpoint}", "--policy-param", f"python={LEROBOT_PYTHON}", "--episodes", "1",
                     "--seconds", "2", "--json", str(out)], name="vla-ros-eval", env=OFFLINE)
    assert run.popen.wait(timeout=300) == 0, run.output()
    report = json.loads(out.read_text())
    assert report["policy"] == "lerobot" and len(report["episodes"]) == 1
    assert report["inference_p50_ms"] is not None
