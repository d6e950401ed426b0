"""Manipulation in the simulator without ROS: the tray, pick / pick_place / stack, their experts, perturbations."""
import mujoco
import numpy as np
import pytest

from vla_ros.embodiment import load_embodiment
from vla_ros.sim.episode import run_expert, run_expert_episode, start_episode, step
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.perturb import LURE_DISTANCE, NUDGE_DISTANCE, NUDGE_RANGE, perturb
from vla_ros.sim.tasks import HOLD_S, TaskError, failure_reason, make_task
from vla_ros.sim.world import CUBE_SIZE, TRAY_FLOOR, World


@pytest.fixture(scope="module")
def arm7():
    world = World(load_embodiment("arm7"))
    return world, SimHardware(world)


def settle(world, hardware, task, seconds):
    """Step the physics with the brakes on for `seconds`, the task judging every period; its last status."""
    control_dt = 1.0 / world.embodiment.control_rate_hz
    for _ in range(int(round(seconds / control_dt))):
        step(world, hardware, max(1, round(control_dt / world.model.opt.timestep)), control_dt)
        status = task.update(control_dt)
    return status


def put_cube(world, colour, position):
    adr = world.cube_qpos[colour]
    world.data.qpos[adr:adr + 7] = [*position, 1.0, 0.0, 0.0, 0.0]
    mujoco.mj_forward(world.model, world.data)


def test_manipulation_task_specs(arm7):
    world, _ = arm7
    world.reset(0)
    rng = np.random.default_rng(0)
    assert make_task("pick_place:red:tray", world, rng).instruction == "put the red cube in the tray"
    assert make_task("stack:red:blue", world, rng).instruction == "stack the red cube on the blue one"
    assert make_task("pick:green", world, rng).instruction == "pick up the green cube"
    stack = make_task("stack", world, rng)
    assert stack.values["base"] != stack.values["colour"]
    with pytest.raises(TaskError, match="the tray is a receptacle"):
        make_task("pick:tray", world, rng)
    with pytest.raises(TaskError, match="the tray is a receptacle"):
        make_task("stack:red:tray", world, rng)
    with pytest.raises(TaskError, match="receptacle 'bowl' is not one of tray"):
        make_task("pick_place:red:bowl", world, rng)
    with pytest.raises(TaskError, match="colour 'purple' is not one of"):
        make_task("pick_place:purple", world, rng)


def test_tray_is_placed_by_the_seed_clear_of_the_cubes(arm7):
    world, _ = arm7
    places = []
    for seed in range(5):
        world.reset(seed)
        assert world.tray is not None
        assert world.clear(world.tray, [])
        assert all(np.linalg.norm(world.cube_pose(c)[0][:2] - world.tray[:2]) >= 0.14 for c in world.colours)
        places.append(world.tray.copy())
    world.reset(0)
    assert np.array_equal(world.tray, places[0]) and len({tuple(p) for p in places}) > 1


def test_a_cube_let_go_in_the_tray_succeeds_after_the_hold_time(arm7):
    world, hardware = arm7
    task = start_episode(world, hardware, "pick_place:red:tray", 0)
    assert failure_reason(task.update(0.0).detail) == "missed grasp"
    put_cube(world, "red", world.tray + [0.0, 0.0, TRAY_FLOOR + CUBE_SIZE / 2 + 0.002])
    status = settle(world, hardware, task, HOLD_S + 0.1)
    assert status.success and status.progress == 1.0


def test_a_cube_on_the_other_succeeds_at_stack_and_a_cube_beside_it_does_not(arm7):
    world, hardware = arm7
    task = start_episode(world, hardware, "stack:red:blue", 0)
    base = world.cube_pose("blue")[0]
    put_cube(world, "red", base + [0.06, 0.0, 0.0])
    assert not settle(world, hardware, task, HOLD_S + 0.1).success
    put_cube(world, "red", base + [0.0, 0.0, CUBE_SIZE + 0.001])
    assert settle(world, hardware, task, HOLD_S + 0.1).success


def test_failure_reasons_come_from_the_detail():
    assert failure_reason("dropped: red cube 0.200 m from the tray") == "dropped"
    assert failure_reason("wrong object: the blue cube is picked up") == "wrong object"
    assert failure_reason("red cube 0.200 m from the tray") == "timeout"


def test_perturbations_change_the_scene_as_named_and_repeat_with_the_seed(arm7):
    world, hardware = arm7
    for seed in range(1000, 1004):
        task = start_episode(world, hardware, "pick_place:blue:tray", seed)
        before = {c: world.cube_pose(c)[0] for c in world.colours}
        lure = perturb("lure", world, task, seed)
        if lure.done:
            moved = [c for c in world.colours if not np.allclose(world.cube_pose(c)[0], before[c])]
            assert len(moved) == 1 and moved[0] != "blue"
            gap = np.linalg.norm(world.cube_pose(moved[0])[0][:2] - before["blue"][:2])
            assert LURE_DISTANCE[0] - 1e-6 <= gap <= LURE_DISTANCE[1]
            assert not world.touching_robot(moved[0])
        task = start_episode(world, hardware, "pick_place:blue:tray", seed)
        assert world.distractor is None
        can = perturb("distractor", world, task, seed)
        if can.done:
            tool = world.ee_position(world.reaching_arm(before["blue"]).name)
            along = (world.distractor[:2] - tool[:2]) @ (before["blue"][:2] - tool[:2])
            assert 0.0 < along < np.linalg.norm(before["blue"][:2] - tool[:2]) ** 2
            assert world.distractor[2] == pytest.approx(world.layout.table_top)
    assert sum(bool(p.done) for p in (lure, can)) >= 1
    stack = start_episode(world, hardware, "stack:red:blue", 1000)
    perturb("lure", world, stack, 1000)
    assert np.linalg.norm(world.cube_pose("green")[0][:2] - world.cube_pose("red")[0][:2]) <= LURE_DISTANCE[1]


def test_a_nudge_moves_the_cube_once_as_the_tool_nears_it(arm7):
    world, hardware = arm7
    task = start_episode(world, hardware, "reach:red", 1000)
    nudge = perturb("nudge", world, task, 1000)
    start = world.cube_pose("red")[0]
    nudge.update()
    assert nudge.done is None and np.allclose(world.cube_pose("red")[0], start)
    assert world.pose_arm(world.reaching_arm(start), world.reach_target(start) + [0.0, 0.0, NUDGE_RANGE / 3])
    nudge.update()
    moved = np.linalg.norm(world.cube_pose("red")[0][:2] - start[:2])
    assert nudge.done and NUDGE_DISTANCE[0] - 1e-6 <= moved <= NUDGE_DISTANCE[1]
    there = world.cube_pose("red")[0]
    nudge.update()
    assert np.array_equal(world.cube_pose("red")[0], there)
    with pytest.raises(TaskError, match="push episodes take no nudge"):
        perturb("nudge", world, start_episode(world, hardware, "push", 0), 0)
    with pytest.raises(TaskError, match="no perturbation 'wind'"):
        perturb("wind", world, task, 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["arm7", "humanoid_upper", "mobile_manipulator"])
def test_manipulation_experts_are_reliable(name):
    """Each body's scripted experts pick, pick and place and stack on a seeded episode (in-process).

    One seed per task: 38-40 of 40 per task and body over seeds 0-39 (`vla-ros bench experts`,
    docs/notes/manipulation.md).
    """
    world = World(load_embodiment(name))
    hardware = SimHardware(world)
    for task in ("pick", "pick_place", "stack"):
        result = run_expert_episode(world, hardware, task, 0, 15.0)
        assert result.success, result


@pytest.mark.slow
def test_the_mobile_manipulator_drives_to_a_cube_out_of_its_arms_reach_and_on_to_the_tray():
    """A cube along the table where the arm cannot grasp it: the base drives (the arm held), then the arm picks.

    The cube in hand, the base drives again to where the arm reaches over the tray.
    """
    world = World(load_embodiment("mobile_manipulator"))
    hardware = SimHardware(world)
    task = start_episode(world, hardware, "pick_place:red:tray", 0)
    low, high = world.layout.sample_low, world.layout.sample_high
    aside = np.append(world.layout.to_world(np.array([0.5 * (low[0] + high[0]), high[1] + 0.15])),
                      world.cube_pose("red")[0][2])
    put_cube(world, "red", aside)
    drives, bases = [], []

    def watch(w, targets, status):
        drives.append(bool(np.any(targets.base != 0.0)))
        bases.append(w.root_pose()[:3, 3].copy())

    result = run_expert(world, hardware, task, 20.0, watch)
    assert result.success, result
    assert sum(now and not before for before, now in zip([False, *drives], drives)) == 2  # two drives
    assert np.linalg.norm(bases[-1][:2] - bases[0][:2]) > 0.03


def test_the_expert_still_places_with_a_lure_a_can_or_a_nudge(arm7):
    """A nudged cube gets a new plan before it is grasped; the lure and the can are left alone."""
    world, hardware = arm7
    for perturbation in ("lure", "distractor", "nudge"):
        result = run_expert_episode(world, hardware, "pick_place:blue:tray", 1000, 15.0, perturbation=perturbation)
        assert result.success, (perturbation, result)
