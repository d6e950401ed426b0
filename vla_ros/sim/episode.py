"""Episodes run in-process: world, hardware, task and a scripted expert stepped together, no ROS.

The same loop the ROS graph runs (expert -> commands -> hardware -> physics -> task), minus
transport, for fast and exactly repeatable runs: demonstrations and expert-reliability checks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from vla_ros.sim.expert import EXPERTS, Observation, Targets, commands_from_targets
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.perturb import Perturbation, perturb
from vla_ros.sim.tasks import Task, TaskStatus, make_task
from vla_ros.sim.world import World


@dataclass(frozen=True)
class EpisodeResult:
    """How an in-process episode ended."""

    seed: int
    task: str  # the full spec, e.g. reach:red
    instruction: str
    success: bool
    seconds: float  # sim time until success, or the time limit
    progress: float


def task_rng(seed: int) -> np.random.Generator:
    """The stream a task draws its unspecified parameters from (apart from the world's)."""
    return np.random.default_rng([seed, 1])


def phrasing_rng(seed: int) -> np.random.Generator:
    """The stream an episode's instruction wording is drawn from (apart from the scene and the task)."""
    return np.random.default_rng([seed, 2])


def observe(world: World) -> Observation:
    """The expert's privileged view: joints, cube centres, receptacles and the table top in the robot's root frame."""
    root = world.root_pose()
    to_root = np.linalg.inv(root)
    cubes = {c: (to_root @ np.append(world.cube_pose(c)[0], 1.0))[:3] for c in world.colours}
    yaws = {}
    for colour in world.colours:
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, world.cube_pose(colour)[1])
        in_root = to_root[:3, :3] @ rotation.reshape(3, 3)
        yaws[colour] = float(np.arctan2(in_root[1, 0], in_root[0, 0]))
    places = {"tray": (to_root @ np.append(world.tray, 1.0))[:3]} if world.tray is not None else {}
    table_top = float((to_root @ np.array([*root[:2, 3], world.layout.table_top, 1.0]))[2])
    return Observation(float(world.data.time), world.joint_vector(), cubes, yaws, places, table_top)


def start_episode(world: World, hardware: SimHardware, task_spec: str, seed: int) -> Task:
    world.reset(seed)
    hardware.reset()
    return make_task(task_spec, world, task_rng(seed))


def step(world: World, hardware: SimHardware, substeps: int, control_dt: float) -> None:
    """One control period of physics under the hardware's current commands."""
    hardware.apply(float(world.data.time), control_dt)
    mujoco.mj_step(world.model, world.data, nstep=substeps)


def run_expert_episode(world: World, hardware: SimHardware, task_spec: str, seed: int, max_seconds: float,
                       on_step: Callable[[World, Targets, TaskStatus], None] | None = None,
                       linger_s: float = 0.0, perturbation: str = "none") -> EpisodeResult:
    """One seeded episode with the task's scripted expert in the loop (see `run_expert`), perturbed by name."""
    task = start_episode(world, hardware, task_spec, seed)
    return run_expert(world, hardware, task, max_seconds, on_step, linger_s,
                      perturbation=perturb(perturbation, world, task, seed))


def run_expert(world: World, hardware: SimHardware, task: Task, max_seconds: float,
               on_step: Callable[[World, Targets, TaskStatus], None] | None = None,
               linger_s: float = 0.0, switch: Callable[[float, TaskStatus], Task | None] | None = None,
               perturbation: Perturbation | None = None) -> EpisodeResult:
    """Run a started episode (`start_episode`) with the task's scripted expert in the loop.

    `on_step` sees the world after each control period and the targets commanded during it. The
    episode ends at success (plus `linger_s` of the expert holding still there: demonstrations
    should show what to do once the goal is reached) or at `max_seconds` of sim time. `switch`,
    asked after each period before success, may hand over a new task: the expert turns to it
    where it is (a change of mind), and the episode is judged by it. `perturbation` (started on
    this episode) is updated after each period.
    """
    expert = EXPERTS[task.name](world.embodiment, task.values)
    control_dt = 1.0 / world.embodiment.control_rate_hz
    substeps = max(1, round(control_dt / world.model.opt.timestep))
    status = TaskStatus(False, 0.0, "")
    succeeded_at = None
    while world.data.time < max_seconds:
        now = float(world.data.time)
        targets = expert.act(observe(world))
        commands = commands_from_targets(world.embodiment, world.joint_vector(), world.joint_velocity_vector(), targets)
        for group, values in commands.items():
            hardware.command(group, values, now)
        if hardware.base is not None:
            hardware.command_base(targets.base, now)
        step(world, hardware, substeps, control_dt)
        if perturbation is not None:
            perturbation.update()
        status = task.update(control_dt)
        changed = switch(float(world.data.time), status) if switch is not None and succeeded_at is None else None
        if changed is not None:
            task = changed
            expert.retarget(task.values)
            status = task.update(0.0)
        if on_step is not None:
            on_step(world, targets, status)
        if status.success and succeeded_at is None:
            succeeded_at = float(world.data.time)
        if succeeded_at is not None and world.data.time >= succeeded_at + linger_s - 1e-9:
            break
    seconds = succeeded_at if succeeded_at is not None else float(world.data.time)
    return EpisodeResult(world.seed, task.spec, task.instruction, succeeded_at is not None, seconds, status.progress)
