"""The scripted operator's judgement and driving, in-process (no ROS): when it steps in, what it says, where it goes."""
import numpy as np
import pytest

from vla_ros.embodiment import load_embodiment
from vla_ros.sim.operator import CORRECTIONS, Operator, OperatorConfig
from vla_ros.sim.tasks import REACH_RADIUS, TASKS

ARM7 = load_embodiment("arm7")
KIN = ARM7.kinematics
TOOL = ARM7.groups["arm"].ee_frame


def home() -> np.ndarray:
    q = np.zeros(len(KIN.joint_names))
    for group in ARM7.commanded_groups:
        q[KIN.index(group.joints)] = group.home
    return q


def scene(near: str = "") -> dict[str, np.ndarray]:
    """Cubes on a table 10 cm under the tool at home, `near` 4 cm under it, the others 25 cm away."""
    below = KIN.frame_pose(home(), TOOL)[:3, 3] - np.array([0.0, 0.0, 0.1])
    offsets = {"red": np.array([0.0, 0.25, 0.0]), "green": np.array([0.0, -0.25, 0.0]),
               "blue": np.array([0.25, 0.0, 0.0])}
    if near:
        offsets[near] = np.array([0.0, 0.0, 0.06])
    return {colour: below + offset for colour, offset in offsets.items()}


def operator(task="reach:red", **config) -> Operator:
    return Operator(ARM7, task, 10.0, OperatorConfig(**config), np.random.default_rng(0))


def test_heading_for_the_wrong_cube_is_taken_over_with_a_correction_naming_the_right_one():
    """Tool near blue when red was asked: after the patience, a takeover and words from CORRECTIONS["wrong"]."""
    watcher = operator(patience_s=1.0)
    assert watcher.tick(0.5, home(), scene("blue"), False).intervention is None, "it waits its patience"
    acts = watcher.tick(1.0, home(), scene("blue"), False)
    assert acts.intervention is True and watcher.took_over == "wrong"
    assert acts.say in [t.format(colour="red") for t in CORRECTIONS["wrong"]]
    assert not any(acts.say == t.format(colour="red") for split in ("train", "held_out")
                   for t in TASKS["reach"].phrasings[split]), "words the model never saw"
    joints, positions = acts.leader
    assert joints == ARM7.groups["arm"].joints + ARM7.groups["gripper"].joints
    assert positions.shape == (len(joints),)


def test_a_tool_that_comes_no_nearer_has_stalled_and_one_at_its_own_cube_is_left_alone():
    """Held 25 cm from red: taken over once stall_s passed without getting nearer; dwelling at red: never."""
    watcher = operator(patience_s=0.5, stall_s=1.0, speak=False)
    steps = [watcher.tick(t, home(), scene(), False) for t in np.arange(0.0, 2.0, 0.05)]
    takeovers = [k for k, acts in enumerate(steps) if acts.intervention]
    assert len(takeovers) == 1 and watcher.took_over == "stalled" and steps[takeovers[0]].say is None
    assert takeovers[0] * 0.05 == pytest.approx(1.5, abs=0.06), "its patience, then stall_s"
    dwelling = operator(patience_s=0.5, stall_s=1.0)
    assert not any(dwelling.tick(t, home(), scene("red"), False).intervention for t in np.arange(0.0, 3.0, 0.05))


def test_the_operator_drives_to_the_cube_asked_for_and_labels_the_outcome():
    """Following its own leader targets, the tool reaches red; the task's success is labelled and handed back."""
    watcher = operator(patience_s=0.0)
    cubes = scene("blue")
    q = home()
    for t in np.arange(0.0, 6.0, 0.02):
        acts = watcher.tick(t, q, cubes, False)
        if acts.leader is not None:
            joints, positions = acts.leader
            q[KIN.index(joints)] = positions
    assert np.linalg.norm(KIN.frame_pose(q, TOOL)[:3, 3] - cubes["red"]) < REACH_RADIUS
    done = watcher.tick(6.0, q, cubes, True)
    assert done.intervention is False and done.label is True
    assert watcher.tick(6.1, q, cubes, True).label is None, "labelled once"
    timeout = operator()
    assert timeout.tick(10.0, home(), scene("red"), False).label is False

