"""`vla-ros eval`: the Wilson interval, a closed-loop run through sim, controller and policy nodes, bad arguments."""
import json
import signal
import subprocess
from pathlib import Path

import cv2
import pytest

from harness import console_script, processes_with_token
from vla_ros.commands.eval import SHEET_FRAMES
from vla_ros.embodiment import load_embodiment
from vla_ros.sim.tasks import PickPlace
from vla_ros.stats import wilson_interval


def test_wilson_interval_matches_known_values():
    """36/40 gives (0.769, 0.960); 0/n and n/n keep a width; no trials know nothing."""
    assert wilson_interval(36, 40) == pytest.approx((0.7695, 0.9604), abs=5e-4)
    assert wilson_interval(0, 2) == pytest.approx((0.0, 0.6576), abs=5e-4)
    low, high = wilson_interval(40, 40)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.9124, abs=5e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_with_the_hold_policy_reports_failures_in_held_out_words(ros, tmp_path):
    """The hold policy never picks the cube up: 0% on one seed, as drawn and with a lure beside the cube.

    Each instruction names its episode's target in held-out words; the outcome table counts the
    missed grasps per perturbation; the JSON has latencies and the sheet one row of frames per
    episode.
    """
    out, sheet = tmp_path / "eval.json", tmp_path / "eval.png"
    run = ros.start([console_script("vla-ros"), "eval", "--policy", "hold", "--task", "pick_place", "--episodes", "1",
                     "--seconds", "2", "--perturb", "none", "--perturb", "lure", "--json", str(out), "--sheet",
                     str(sheet), "--embodiment", "arm7"], name="vla-ros-eval")
    assert run.popen.wait(timeout=300) == 0, run.output()
    report = json.loads(out.read_text())
    assert report["policy"] == "hold" and report["phrasing"] == "held_out"
    assert report["success_rate"] == 0.0 and report["ci95"][0] == 0.0 and report["ci95"][1] > 0.5
    episodes = report["episodes"]
    assert report["progress"] == pytest.approx(sum(e["progress"] for e in episodes) / 2, abs=1e-3)
    assert [(e["seed"], e["perturb"]) for e in episodes] == [(1000, "none"), (1000, "lure")]
    for episode in episodes:
        colour = episode["target"].removesuffix("_cube")
        held_out = {t.format(colour=colour, receptacle="tray") for t in PickPlace.phrasings["held_out"]}
        assert episode["instruction"] in held_out
        assert not episode["success"] and episode["seconds"] >= 2.0 and episode["reason"] == "missed grasp"
    for name in ("none", "lure"):
        assert report["perturbations"][name]["failures"] == {"missed grasp": 1}
    assert "outcomes and failure reasons" in run.output() and "missed grasp" in run.output()
    assert sum(n["episodes"] for n in report["per_instruction"].values()) == 2
    assert report["inference_p50_ms"] is not None and report["inference_p95_ms"] >= report["inference_p50_ms"]
    front = load_embodiment("arm7").cameras["front"]
    assert cv2.imread(str(sheet)).shape == (2 * front.height, SHEET_FRAMES * front.width, 3)


def test_sigterm_stops_the_evaluation_and_every_node_it_started(ros):
    """`kill` of a running eval stops it as Ctrl-C does: exit 130 and none of its nodes left running."""
    run = ros.start([console_script("vla-ros"), "eval", "--policy", "hold", "--episodes", "50", "--seconds", "2"],
                    name="vla-ros-eval")
    ros.spin_until(lambda: "episode 1/50" in run.output() or not run.running(), 120, "the first episode's line")
    assert run.running(), run.output()
    run.popen.send_signal(signal.SIGTERM)
    assert run.popen.wait(timeout=60) == 130, run.output()
    assert processes_with_token(ros.token) == [], "nodes outlived the evaluation"


def test_eval_in_lockstep_runs_every_node_on_the_sims_clock_without_waiting_in_vain(ros, tmp_path):
    """--lockstep: sim time for every node, and neither the controller nor the policy left the sim waiting.

    Whether runs repeat is measured on 40 seeds (docs/notes/sim-time.md); the stop protocol is
    test_sim_node's.
    """
    out = tmp_path / "eval.json"
    run = ros.start([console_script("vla-ros"), "eval", "--policy", "hold", "--episodes", "2", "--seconds", "2",
                     "--lockstep", "--json", str(out)], name="vla-ros-eval")
    assert run.popen.wait(timeout=300) == 0, run.output()
    report = json.loads(out.read_text())
    assert report["use_sim_time"] is True and report["lockstep"] is True
    assert [e["seconds"] >= 2.0 for e in report["episodes"]] == [True, True]
    logs = Path(report["log_dir"])
    assert "on the use_sim_time (/clock)" in (logs / "controller_node.log").read_text()
    assert "lockstep:" not in (logs / "sim_node.log").read_text(), "a timeout: someone left the sim waiting"


@pytest.mark.parametrize("args, message", [
    (["--task", "rech"], "no task 'rech' (did you mean 'reach'?)"),
    (["--policy", "hodl"], "no policy backend 'hodl' (did you mean 'hold'?)"),
    (["--phrasing", "paraphrased"], "phrasing 'paraphrased' is not one of canonical, train, held_out"),
    (["--perturb", "wind"], "no perturbation 'wind'; perturbations: none, distractor, nudge, lure"),
    (["--task", "push", "--perturb", "nudge"], "push takes no --perturb nudge"),
])
def test_bad_arguments_exit_2_with_the_fix(args, message):
    """A wrong task, policy, phrasing or perturbation is named on stderr (exit 2) before any node starts."""
    result = subprocess.run([console_script("vla-ros"), "eval", "--episodes", "1", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
