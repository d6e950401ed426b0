"""The shipped checkpoint in charge of every shipped body through the ROS graph.

sim_node, controller_node and policy_node with `builtin` run as separate processes over DDS: it
drives each body (its layout, masks and cameras), and on arm7 and mobile_manipulator it makes for
the cube named in words it was not trained on (it does not reach on humanoid_upper: see GATES);
on arm7 it turns to another cube when the instruction changes mid-motion.
"""
import json

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from harness import console_script
from vla_ros.embodiment import load_embodiment
from vla_ros.embodiment.ik import ArmIK
from vla_ros.ros.qos import LATCHED

SWAP_SEED = 1007  # a scene whose red and blue cubes stand well apart (checked below)
# Per body: episodes, successes at least, mean progress at least (the share of the way to the named cube made).
# Below what the shipped checkpoint did on these seeds (README): arm7 6/6; mobile_manipulator 2/4, mean progress
# 0.64 (20 episodes from seed 2000: 11 reached, 5 ended with progress under 0.15, so a success gate on 4 would
# fail about one run in 25); humanoid_upper 0/20 from seed 2000: it does not reach on the humanoid, so only its layout,
# masks, cameras and errors are checked there.
GATES = {"arm7": (6, 4, 0.5), "mobile_manipulator": (4, 0, 0.1), "humanoid_upper": (1, 0, 0.0)}


def tool_and_cubes(embodiment, states: list, objects: list) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The tool position and the cube centres [m] in the robot's root frame, from the newest messages."""
    state = states[-1]
    positions = dict(zip(state.name, state.position))
    q = np.array([positions[name] for name in embodiment.kinematics.joint_names])
    tool = ArmIK.for_group(embodiment, embodiment.groups["arm"]).pose(q)[:3, 3]
    cubes = {m.text.removesuffix("_cube"): np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z])
             for m in objects[-1].markers}
    return tool, cubes


def test_the_shipped_model_goes_for_the_colour_it_is_told_and_changes_course(ros):
    """Told "red", the tool heads for the red cube; told "blue" halfway there, it ends at the blue one."""
    embodiment = load_embodiment("arm7")
    ros.start_node("sim_node", task="reach:red", seed=SWAP_SEED)
    ros.start_node("controller_node")
    ros.start_node("policy_node", policy="builtin")
    diagnostics = ros.diagnostics()
    states = ros.subscribe("joint_states", JointState, 1)
    objects = ros.subscribe("sim/objects", MarkerArray, 1)
    diagnostics.wait("policy_node", lambda s: s["level"] == 0 and "reach the red" in s["instruction"], 120,
                     "policy_node publishing chunks for the red cube")
    start, cubes = tool_and_cubes(embodiment, states, objects)
    assert np.linalg.norm(cubes["red"][:2] - cubes["blue"][:2]) > 0.15

    ros.spin_until(lambda: False if not states else np.linalg.norm(
        tool_and_cubes(embodiment, states, objects)[0] - cubes["red"]) < 0.5 * np.linalg.norm(start - cubes["red"]),
        10, "the tool halfway to the red cube")
    swap, _ = tool_and_cubes(embodiment, states, objects)
    publisher = ros.node.create_publisher(String, "vla/instruction", LATCHED)
    publisher.publish(String(data="now reach the blue cube instead"))

    def at_blue() -> bool:
        tool, cubes_now = tool_and_cubes(embodiment, states, objects)
        return np.linalg.norm(tool - cubes_now["blue"]) < 0.06

    ros.spin_until(at_blue, 10, "the tool at the blue cube after the instruction changed")
    end, cubes = tool_and_cubes(embodiment, states, objects)
    # It turned away from red: further from it than where it was told, and nearer blue than red.
    assert np.linalg.norm(end - cubes["red"]) > np.linalg.norm(swap - cubes["red"])
    assert np.linalg.norm(end - cubes["blue"]) < np.linalg.norm(end - cubes["red"]) - 0.05


def evaluate(ros, tmp_path, body: str, episodes: int) -> dict:
    out = tmp_path / "eval.json"
    run = ros.start([console_script("vla-ros"), "eval", "--embodiment", body, "--episodes", str(episodes), "--seed",
                     "2000", "--json", str(out)],
                    name="vla-ros-eval")
    assert run.popen.wait(timeout=900) == 0, run.output()
    report = json.loads(out.read_text())
    assert report["policy"] == "builtin" and report["phrasing"] == "held_out"
    return report


@pytest.mark.parametrize("body", list(GATES))
def test_the_shipped_model_drives_every_shipped_body_towards_cubes_named_in_held_out_words(ros, tmp_path, body):
    """One checkpoint drives each body (its layout, masks and cameras): a short version of the acceptance eval.

    The gate per body (GATES): episodes that succeed, and the mean share of the way to the named cube
    the tool made (0: stayed, 1: there).
    """
    episodes, successes, progress = GATES[body]
    report = evaluate(ros, tmp_path, body, episodes)
    assert report["embodiment"] == body
    assert all(e["errors"] == 0 and e["inference_p50_ms"] is not None for e in report["episodes"])
    assert report["progress"] == pytest.approx(sum(e["progress"] for e in report["episodes"]) / episodes, abs=1e-3)
    assert report["successes"] >= successes and report["progress"] >= progress, json.dumps(report["episodes"],
                                                                                           indent=1)
