"""Demonstrations: the scripted expert solves seeded episodes in the simulator, each recorded as a bag.

Runs in-process (world, hardware, expert, renderer stepped together: exactly repeatable, several
times faster than real time) and writes what a robot's recorder would: joint_states every
control period, each camera at its rate, the expert's commanded targets, the instruction in one
of the task's phrasings, and the outcome.

With a switch fraction, that share of the episodes change their mind: partway to the cube (a
quarter to three quarters of the way, drawn from the seed) the instruction names another cube and
the expert turns to it. Training keeps the frames from the change on (dataset.episode_samples):
they show turning away from a cube because the words said so, which no straight episode does.

With a near-miss fraction, that share of the episodes start with the arm at rest low over the
table a few centimetres beside the cube it is told to reach or pick up (where a policy that stops
short ends up), and the expert goes on from there. Straight demonstrations only pass low over the
table at their goal, so a model can learn "low over the table" as "arrived" and never look at
where the cube is; these show that low and beside it means "not there yet".
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vla_ros import __version__
from vla_ros.data.bag import EpisodeWriter
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.errors import VlaRosError
from vla_ros.sim.episode import EpisodeResult, phrasing_rng, run_expert, start_episode, task_rng
from vla_ros.sim.expert import Targets
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.takeover import MODEL_DID_IT, ChunkSource, Handover, ModelDriver
from vla_ros.sim.tasks import Task, TaskStatus, make_task
from vla_ros.sim.world import World

SWITCHABLE = ("reach",)  # tasks whose expert can turn to another cube mid-way
NEAR_MISS_TASKS = ("reach", "pick", "pick_place", "stack")  # tasks that can start beside their cube (a push cannot)
SWITCH_PROGRESS = (0.25, 0.75)  # the share of the way to the first cube at which a switch comes
NEAR_MISS_DISTANCE = (0.04, 0.12)  # [m] sideways from where the tool reaches the cube
NEAR_MISS_HEIGHT = (0.0, 0.06)  # [m] above it
NEAR_MISS_TRIES = 20


def switch_rng(seed: int) -> np.random.Generator:
    """The stream an episode's change of mind is drawn from (apart from scene, task and wording)."""
    return np.random.default_rng([seed, 3])


def _drawn(task: Task, fraction: float, rng: np.random.Generator, tasks: tuple[str, ...], refusal: str) -> bool:
    """Whether this episode is one of the `fraction` drawn from `rng`.

    A task not among `tasks` is refused (`refusal` says with what) unless the fraction is 0.
    """
    if fraction <= 0.0:
        return False
    if task.name not in tasks:
        raise VlaRosError(f"task {task.name!r} {refusal} (only {', '.join(tasks)})")
    return bool(rng.random() < fraction)


@dataclass(frozen=True)
class Switch:
    """A planned change of mind: to the `colour` cube once `progress` of the way to the first is done."""

    colour: str
    progress: float

    @staticmethod
    def draw(task: Task, seed: int, fraction: float) -> Switch | None:
        rng = switch_rng(seed)
        if not _drawn(task, fraction, rng, SWITCHABLE, "cannot switch cubes mid-episode"):
            return None
        others = [c for c in task.world.colours if c != task.target]
        return Switch(str(rng.choice(others)), float(rng.uniform(*SWITCH_PROGRESS)))


def near_miss_rng(seed: int) -> np.random.Generator:
    """The stream an episode's near-miss start is drawn from."""
    return np.random.default_rng([seed, 4])


def start_near_miss(task: Task, seed: int, fraction: float) -> dict | None:
    """In `fraction` of the seeds, put the arm at rest beside the cube the task names.

    The cube is the one the task names, drawn from the seed; returns what was done, or None (the arm stays
    at home).
    """
    rng = near_miss_rng(seed)
    if not _drawn(task, fraction, rng, NEAR_MISS_TASKS, "has no near-miss start"):
        return None
    world = task.world
    cube = world.cube_pose(task.target)[0]
    arm = world.reaching_arm(cube)
    if arm is None:
        return None
    reach = world.reach_target(cube)
    for _ in range(NEAR_MISS_TRIES):
        angle, distance = rng.uniform(0.0, 2 * np.pi), rng.uniform(*NEAR_MISS_DISTANCE)
        offset = np.array([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(*NEAR_MISS_HEIGHT)])
        if world.pose_arm(arm, reach + offset):
            return {"offset_m": [round(float(v), 4) for v in offset]}
    return None


@dataclass(frozen=True)
class Recorded:
    """A recorded demonstration: the episode's result, its wording, its bag and what was done to it."""

    result: EpisodeResult
    instruction: str  # the phrasing the episode was recorded with
    path: Path | None  # None: nothing recorded (the policy driving finished the task itself)
    handover: Handover | None = None  # where the policy taking over (if any) handed over to the expert


class Collector:
    """One embodiment's world, hardware and renderers, reused across episodes.

    With a `takeover` policy, it drives each episode's start (vla_ros.sim.takeover) for at most
    `drive_s` of sim time, grasping itself in `own_grasp` of the seeds.
    """

    def __init__(self, embodiment: Embodiment, takeover: ChunkSource | None = None, drive_s: float = 8.0,
                 own_grasp: float = 0.0):
        self.embodiment = embodiment
        self.world = World(embodiment)
        self.hardware = SimHardware(self.world)
        self.io = EmbodimentIO(embodiment)
        self.renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.driver = ModelDriver(self.world, self.hardware, takeover, self._render) if takeover else None
        self.drive_s, self.own_grasp = drive_s, own_grasp

    def _render(self, camera: str) -> np.ndarray:
        spec = self.embodiment.cameras[camera]
        size = (spec.height, spec.width)
        if size not in self.renderers:
            self.renderers[size] = mujoco.Renderer(self.world.model, *size)
        renderer = self.renderers[size]
        renderer.update_scene(self.world.data, camera=self.world.cameras[camera])
        return renderer.render()

    def record(self, task_spec: str, seed: int, out: Path, phrasing: str = "train", max_seconds: float = 10.0,
               linger_s: float = 1.0, switch_fraction: float = 0.0, near_miss_fraction: float = 0.0) -> Recorded:
        """Run one seeded expert episode and write it to a bag in `out`.

        A change of mind in `switch_fraction` of the seeds, a near-miss start in `near_miss_fraction`.
        """
        world, embodiment = self.world, self.embodiment
        task = start_episode(world, self.hardware, task_spec, seed)
        near_miss = start_near_miss(task, seed, near_miss_fraction)  # before any step: the brakes hold its pose
        words = phrasing_rng(seed)
        instruction = task.phrase(phrasing, words)
        planned = Switch.draw(task, seed, switch_fraction)
        handover = None
        if self.driver is not None:
            handover = self.driver.drive(task, instruction, seed, self.drive_s, self.own_grasp)
            if handover.reason in MODEL_DID_IT:
                result = EpisodeResult(seed, task.spec, instruction, False, handover.seconds, 0.0)
                return Recorded(result, instruction, None, handover)
        then = f"-then-{planned.colour}" if planned else ""
        near = "-near" if near_miss else ""
        taken = "-takeover" if handover else ""
        path = out / f"{embodiment.name}-{task.spec.replace(':', '-')}{then}{near}{taken}-s{seed:06d}"
        info = {"embodiment": embodiment.name, "task": task.spec, "seed": seed, "phrasing": phrasing,
                "recorded_by": f"vla_ros {__version__} collect (scripted expert)"}
        writer = EpisodeWriter(path, {name: c.topic for name, c in embodiment.cameras.items()},
                               self.io.base is not None, info, start=time.time())
        started = float(world.data.time)
        writer.instruction(started, instruction)
        control_dt = 1.0 / embodiment.control_rate_hz
        # Each camera's first frame comes with the first joint state, then one every period from it: on the
        # same clock as the frames, so a dataset sampled at the camera's rate has every frame's image fresh.
        next_frame = dict.fromkeys(embodiment.cameras, started + control_dt)
        slots = [(slot.group, slot.names) for slot in embodiment.layout.slots if slot.group != self.io.base]

        def on_step(world: World, targets: Targets, status: TaskStatus) -> None:
            now = float(world.data.time)
            names, position, velocity, effort = world.joint_states()
            writer.joint_state(now, names, position, velocity, effort)
            # The targets were commanded at the start of the period that just ended.
            writer.commands(now - control_dt, self.io.joints,
                            np.concatenate([targets.joints[group][0] for group, _ in slots]),
                            np.concatenate([targets.joints[group][1] for group, _ in slots]))
            if self.io.base is not None:
                writer.base(now - control_dt, targets.base, world.base_velocity(), embodiment.description.root)
            for camera, due in next_frame.items():
                if now + 1e-9 >= due:
                    writer.image(camera, now, self._render(camera), embodiment.cameras[camera].frame)
                    next_frame[camera] = due + 1.0 / embodiment.cameras[camera].rate_hz

        switched = {}

        def switch(now: float, status: TaskStatus) -> Task | None:
            nonlocal instruction
            if planned is None or switched or status.progress < planned.progress:
                return None
            changed = make_task(f"{task.name}:{planned.colour}", world, task_rng(seed))
            instruction = changed.phrase(phrasing, words)
            writer.instruction(now, instruction)
            switched.update({"at_s": round(now, 3), "from": task.spec, "to": changed.spec})
            return changed

        try:
            result = run_expert(world, self.hardware, task, started + max_seconds, on_step, linger_s, switch)
        except BaseException:
            writer.abort()
            raise
        outcome = {"success": result.success, "seconds": round(result.seconds, 3), "progress": round(result.progress,
                                                                                                     3),
                   "task": result.task, "instruction": instruction}
        if switched:
            outcome["switched"] = switched
        if near_miss:
            outcome["near_miss"] = near_miss
        if handover:
            outcome["takeover"] = handover.to_json()
        writer.finish(float(world.data.time), outcome)
        return Recorded(result, instruction, path, handover)

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()


def collect(embodiment: Embodiment, task_spec: str, seeds: list[int], out: Path, phrasing: str = "train",
            max_seconds: float = 10.0, linger_s: float = 1.0) -> list[Recorded]:
    """Record one expert episode per seed into `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    collector = Collector(embodiment)
    recorded = []
    try:
        for seed in seeds:
            recorded.append(collector.record(task_spec, seed, out, phrasing, max_seconds, linger_s))
    finally:
        collector.close()
    return recorded
