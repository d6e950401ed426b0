"""The simulator core without ROS: world, hardware interface, tasks, experts, rendering."""
import copy
import dataclasses

import mujoco
import numpy as np
import pytest
from test_embodiment_init import vendor_robots

from vla_ros.embodiment import load_embodiment
from vla_ros.embodiment.draft import draft_embodiment
from vla_ros.sim.episode import run_expert_episode, start_episode, step
from vla_ros.sim.hardware import CommandRejected, SimHardware
from vla_ros.sim.robot import FLAT_THICKNESS, _solid
from vla_ros.sim.tasks import TaskError, make_task
from vla_ros.sim.world import CUBE_TURN, World

SHIPPED = ["arm7", "mobile_manipulator", "humanoid_upper"]


@pytest.fixture(scope="module", params=SHIPPED)
def world(request):
    return World(load_embodiment(request.param))


def advance(world, hardware, seconds):
    control_dt = 1.0 / world.embodiment.control_rate_hz
    for _ in range(int(round(seconds / control_dt))):
        step(world, hardware, max(1, round(control_dt / world.model.opt.timestep)), control_dt)


def test_reset_restores_the_seeded_state_exactly(world):
    """The same seed gives the same physics state, after any amount of running in between."""
    hardware = SimHardware(world)
    world.reset(5)
    first = world.state()
    advance(world, hardware, 0.3)
    assert not np.array_equal(world.state(), first)
    world.reset(5)
    assert np.array_equal(world.state(), first)
    red_at_5 = world.cube_pose("red")[0]
    world.reset(6)
    assert not np.array_equal(world.cube_pose("red")[0], red_at_5)


def test_seeds_place_cubes_apart_on_the_table_and_within_reach(world):
    """Cubes sit on the table top, apart from each other, where an arm reaches above them.

    Each is turned at most CUBE_TURN from the table's axes: fingers go across two of its faces by
    one clear least quarter turn, never one of two equal ones.
    """
    positions, turns = [], []
    for seed in range(5):
        world.reset(seed)
        poses = [world.cube_pose(c) for c in world.colours]
        cubes = [position for position, _ in poses]
        turns += [2 * np.arctan2(quaternion[3], quaternion[0]) for _, quaternion in poses]
        positions.append(np.concatenate(cubes))
        for i, a in enumerate(cubes):
            assert a[2] == pytest.approx(world.layout.table_top + 0.02, abs=1e-6)
            assert world.reaching_arm(a) is not None
            for b in cubes[i + 1:]:
                assert np.linalg.norm(a[:2] - b[:2]) >= 0.12
    assert len({tuple(np.round(p, 6)) for p in positions}) == 5
    assert CUBE_TURN / 2 < np.max(np.abs(turns)) <= CUBE_TURN < np.pi / 4


def test_the_table_goes_where_the_hands_are_at_home():
    """An arm whose home points its hand sideways gets the same scene, turned to that side."""
    arm7 = load_embodiment("arm7")
    arm = arm7.groups["arm"]
    sideways = copy.copy(arm7)
    turn = -np.pi / 2 * (np.arange(len(arm.joints)) == 0)  # the turntable joint a quarter turn right
    sideways.groups = {**arm7.groups, "arm": dataclasses.replace(arm, home=arm.home + turn)}
    ahead, beside = World(arm7), World(sideways)
    assert ahead.layout.heading == 0.0 and beside.layout.heading == pytest.approx(-np.pi / 2)
    ahead.reset(3)
    beside.reset(3)
    for colour in ahead.colours:
        x, y, z = ahead.cube_pose(colour)[0]
        np.testing.assert_allclose(beside.cube_pose(colour)[0], [y, -x, z], atol=1e-9)
    np.testing.assert_allclose(beside.model.geom("table").pos[:2], [0.0, -ahead.model.geom("table").pos[0]], atol=1e-9)


def test_cameras_show_the_robot_and_the_cubes(world):
    """Segmented renders of the embodiment's cameras contain robot pixels and every cube."""
    world.reset(0)
    robot_bodies = set(range(world.model.nbody)) - {0, *world.cube_body.values()}
    seen = {c: 0 for c in world.colours}
    robot_pixels = 0
    for name, camera in world.embodiment.cameras.items():
        with mujoco.Renderer(world.model, camera.height, camera.width) as renderer:
            renderer.update_scene(world.data, camera=world.cameras[name])
            rgb = renderer.render()
            renderer.enable_segmentation_rendering()
            renderer.update_scene(world.data, camera=world.cameras[name])
            segments = renderer.render()
        assert rgb.std() > 10, f"camera {name} renders a flat image"
        geoms = segments[..., 0][segments[..., 1] == mujoco.mjtObj.mjOBJ_GEOM]
        bodies = world.model.geom_bodyid[geoms]
        robot_pixels += int(np.isin(bodies, list(robot_bodies)).sum())
        for colour in world.colours:
            seen[colour] += int((bodies == world.cube_body[colour]).sum())
    assert robot_pixels > 200
    assert all(count > 20 for count in seen.values()), seen


def test_bad_commands_never_reach_the_physics(world):
    """Wrong length, NaN, Inf and unknown groups are refused, and the robot moves exactly as without them."""
    hardware = SimHardware(world)
    group = world.embodiment.commanded_groups[0]
    n = len(group.joints)
    bad = [np.zeros(n + 1), np.full(n, np.nan), np.r_[np.zeros(n - 1), np.inf]]
    world.reset(1)
    advance(world, hardware, 0.2)
    reference = world.state()
    for values in bad:
        with pytest.raises(CommandRejected):
            hardware.command(group.name, values, world.data.time)
    with pytest.raises(CommandRejected, match="no commanded group"):
        hardware.command("tail", np.zeros(1), world.data.time)
    with pytest.raises(CommandRejected, match="non-finite|no mobile base"):
        hardware.command_base([np.nan, 0, 0], world.data.time)
    advance(world, hardware, 0.2)
    after_bad = world.state()
    world.reset(1)
    hardware.reset()
    advance(world, hardware, 0.2)
    assert np.array_equal(world.state(), reference)
    advance(world, hardware, 0.2)
    assert np.array_equal(world.state(), after_bad)


def test_brakes_hold_the_robot_without_commands(world):
    """With no commands at all, every commanded joint stays within 0.01 rad|m of its start for 1 s."""
    hardware = SimHardware(world)
    world.reset(2)
    start = {g.name: world.data.qpos[world.group_qpos[g.name]].copy() for g in world.embodiment.groups.values()}
    advance(world, hardware, 1.0)
    for group in world.embodiment.groups.values():
        drift = np.abs(world.data.qpos[world.group_qpos[group.name]] - start[group.name]).max()
        assert drift < 0.01, f"{group.name} drifted {drift:.4f}"
    assert set(hardware.holding(world.data.time)) == {g.name for g in world.embodiment.commanded_groups}


def test_the_oldest_applied_command_is_timed_until_the_brakes_take_over(world):
    world.reset(2)
    hardware = SimHardware(world, command_timeout_s=0.25)
    t = float(world.data.time)
    assert hardware.oldest_command_age(t) == 0.0, "no command yet: nothing stale is applied"
    groups = world.embodiment.commanded_groups
    hardware.command(groups[0].name, world.data.qpos[world.group_qpos[groups[0].name]], t + 1.0)
    hardware.command(groups[1].name, world.data.qpos[world.group_qpos[groups[1].name]], t + 1.05)
    assert hardware.oldest_command_age(t + 1.07) == pytest.approx(0.07)
    assert hardware.oldest_command_age(t + 1.28) == pytest.approx(0.23), "the first group is braked, the second not"
    assert hardware.oldest_command_age(t + 1.31) == 0.0


def test_mimic_joints_follow_their_primary(world):
    """Equality constraints keep each mimic joint at multiplier * primary + offset."""
    hardware = SimHardware(world)
    world.reset(0)
    for group in world.embodiment.commanded_groups:
        if group.kind in ("gripper", "hand"):
            hardware.command(group.name, group.lower + 0.6 * (group.upper - group.lower), world.data.time)
    advance(world, hardware, 0.5)
    mimics = [j for j in world.embodiment.description.movable_joints if j.mimic]
    assert mimics
    for joint in mimics:
        primary, multiplier, offset = joint.mimic
        expected = multiplier * world.data.qpos[world.qpos_adr[primary]] + offset
        assert world.data.qpos[world.qpos_adr[joint.name]] == pytest.approx(expected, abs=2e-3)


def test_mobile_base_follows_cmd_vel_in_its_frame_and_stops_on_timeout():
    world = World(load_embodiment("mobile_manipulator"))
    hardware = SimHardware(world, base_timeout_s=0.5)
    world.reset(0)
    world.data.qpos[world.base_qpos[2]] = np.pi / 2  # facing +y
    mujoco.mj_forward(world.model, world.data)
    for _ in range(100):
        hardware.command_base([0.9, 0.0, 0.0], world.data.time)  # above the 0.5 m/s limit
        advance(world, hardware, 0.01)
    x, y = world.data.qpos[world.base_qpos[:2]]
    assert abs(x) < 0.01 and 0.3 < y < 0.5, "1 s at the clamped 0.5 m/s, ramped, along the base's +x = world +y"
    assert world.base_velocity()[0] == pytest.approx(0.5, abs=0.02)
    advance(world, hardware, 1.5)
    assert np.abs(world.base_velocity()).max() < 0.01, "stopped after the command timeout"


def test_humanoid_legs_are_held_by_the_stand_in_balance_stack():
    world = World(load_embodiment("humanoid_upper"))
    hardware = SimHardware(world)
    world.reset(0)
    pelvis = world.root_pose().copy()
    legs = world.embodiment.groups["legs"]
    advance(world, hardware, 1.0)
    assert np.allclose(world.root_pose(), pelvis)
    assert np.abs(world.data.qpos[world.group_qpos["legs"]] - legs.home).max() < 0.02
    assert "legs" not in world.actuators, "delegated legs have no commanded actuators"


def test_task_specs():
    world = World(load_embodiment("arm7"))
    world.reset(0)
    rng = np.random.default_rng(0)
    assert make_task("reach:red", world, rng).instruction == "reach the red cube"
    assert make_task("push:blue:left", world, rng).instruction == "push the blue cube to the left"
    assert make_task("reach", world, rng).target in world.colours
    with pytest.raises(TaskError, match="did you mean 'reach'"):
        make_task("rech", world, rng)
    with pytest.raises(TaskError, match="colour 'purple' is not one of"):
        make_task("reach:purple", world, rng)
    with pytest.raises(TaskError, match="takes 1 parameters"):
        make_task("reach:red:left", world, rng)


def test_reach_success_needs_the_tool_held_at_the_cube():
    """Not at the cube: no success; a tool teleported onto the cube succeeds after the hold time."""
    world = World(load_embodiment("arm7"))
    hardware = SimHardware(world)
    task = start_episode(world, hardware, "reach:red", 0)
    assert not task.update(0.1).success
    cube, _ = world.cube_pose("red")
    arm = world.arms[0]
    q = world.joint_vector()
    to_root = np.linalg.inv(world.root_pose())
    target = (to_root @ np.append(world.reach_target(cube), 1.0))[:3]
    solution, residual = world.ik[arm.name].solve(q, target, world.ik[arm.name].pose(q)[:3, :3])
    assert residual < 0.005
    world.data.qpos[world.group_qpos["arm"]] = solution[world.embodiment.kinematics.index(arm.joints)]
    mujoco.mj_forward(world.model, world.data)
    statuses = [task.update(0.1) for _ in range(6)]
    assert not statuses[3].success and statuses[5].success and statuses[5].progress == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name, episodes", [("arm7", 10), ("mobile_manipulator", 10), ("humanoid_upper", 6)])
def test_reach_expert_is_reliable(name, episodes):
    """The scripted reach expert succeeds in at least 90% of seeded episodes (in-process; all of seeds 0-9).

    Six on the humanoid, whose world steps slowest.
    """
    world = World(load_embodiment(name))
    hardware = SimHardware(world)
    results = [run_expert_episode(world, hardware, "reach", seed, 8.0) for seed in range(episodes)]
    assert sum(r.success for r in results) >= 0.9 * episodes, [(r.seed, r.progress) for r in results if not r.success]


@pytest.mark.slow
@pytest.mark.parametrize("name, needed", [("arm7", 9), ("mobile_manipulator", 8), ("humanoid_upper", 7)])
def test_push_expert_is_reliable(name, needed):
    """The scripted push expert succeeds in `needed` of 10 seeded episodes (in-process).

    The mobile manipulator's short wrist and the humanoid's one-DoF hand lose the cube more often
    (about 90% and 85% over 40 seeds; on seeds 0-9 10, 9 and 8 of 10).
    """
    world = World(load_embodiment(name))
    hardware = SimHardware(world)
    results = [run_expert_episode(world, hardware, "push", seed, 8.0) for seed in range(10)]
    assert sum(r.success for r in results) >= needed, [(r.seed, r.task, r.progress) for r in results if not r.success]


@pytest.mark.slow
@pytest.mark.parametrize("robot, urdf", [
    ("panda", "panda_description/urdf/panda.urdf"),  # Collada (.dae) visuals with their own colours
    ("ur5", "ur_description/urdf/ur5_robot.urdf"),  # a link called "world"
])
def test_vendor_urdf_with_meshes_loads_renders_and_reaches(tmp_path, robot, urdf):
    """A drafted vendor embodiment builds a world whose mesh geoms are what the camera sees, and reaches."""
    output = tmp_path / f"{robot}.yaml"
    output.write_text(draft_embodiment(vendor_robots() / urdf, output))
    world = World(load_embodiment(output))
    world.reset(0)
    assert world.model.nmesh > 5
    with mujoco.Renderer(world.model, 240, 320) as renderer:
        renderer.update_scene(world.data, camera="overview")
        rgb = renderer.render()
        renderer.enable_segmentation_rendering()
        renderer.update_scene(world.data, camera="overview")
        segments = renderer.render()
    geoms = segments[..., 0][segments[..., 1] == mujoco.mjtObj.mjOBJ_GEOM]
    mesh_pixels = int((world.model.geom_type[geoms] == mujoco.mjtGeom.mjGEOM_MESH).sum())
    assert mesh_pixels > 1000, f"only {mesh_pixels} pixels of mesh geometry in view"
    robot_rgb = rgb[(segments[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)
                    & np.isin(segments[..., 0], np.flatnonzero(world.model.geom_type == mujoco.mjtGeom.mjGEOM_MESH))]
    assert robot_rgb.std() > 5, "meshes render shaded, not as a flat silhouette"
    hardware = SimHardware(world)
    assert sum(run_expert_episode(world, hardware, "reach", seed, 6.0).success for seed in range(3)) >= 2


def test_a_robot_whose_tools_never_reach_the_table_still_comes_up(tmp_path):
    """SO-100's drafted home keeps its tool from pointing down at the table: the world still comes up.

    Its cubes lie on free places of the table, listed as unreached, the same ones for a seed
    whatever was reset before.
    """
    output = tmp_path / "so100.yaml"
    output.write_text(draft_embodiment(vendor_robots() / "so_arm_description/urdf/so100.urdf", output))
    world = World(load_embodiment(output))
    world.reset(3)
    assert not world.table_in_reach
    assert world.unreached == list(world.colours)
    placed = np.array([world.cube_pose(c)[0] for c in world.colours])
    assert np.all(placed[:, 2] > world.layout.table_top), "the cubes lie on the table"
    world.reset(4)
    world.reset(3)
    assert np.array_equal(np.array([world.cube_pose(c)[0] for c in world.colours]), placed)


def test_flat_mesh_parts_get_a_thickness_so_mujoco_builds_their_hull():
    """A decal's vertices all in one plane get copies 0.1 mm behind them; solid parts stay as they are."""
    flat = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    thick = _solid(flat)
    assert len(thick) == 8 and np.allclose(np.abs(thick[4:, 2]), FLAT_THICKNESS)
    solid = np.vstack([flat, [[0.0, 0.0, 1.0]]])
    assert np.array_equal(_solid(solid), solid)
