"""Demonstrations: the scripted expert solves seeded episodes in the simulator, each recorded as a bag.

Runs in-process (world, hardware, expert, renderer stepped together: exactly repeatable, several
times faster than real time) and writes what a robot's recorder would: joint_states every
control period, each camera at its rate, the expert's commanded targets, the instruction in one
of the task's phrasings, and the outcome.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import time

import mujoco
import numpy as np

from vla_ros import __version__
from vla_ros.data.bag import EpisodeWriter
from vla_ros.embodiment import Embodiment
from vla_ros.policy.mapping import EmbodimentIO
from vla_ros.sim.episode import EpisodeResult, phrasing_rng, run_expert, start_episode
from vla_ros.sim.expert import Targets
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.tasks import TaskStatus
from vla_ros.sim.world import World


@dataclass(frozen=True)
class Recorded:
    result: EpisodeResult
    instruction: str  # the phrasing the episode was recorded with
    path: Path


class Collector:
    """One embodiment's world, hardware and renderers, reused across episodes."""

    def __init__(self, embodiment: Embodiment):
        self.embodiment = embodiment
        self.world = World(embodiment)
        self.hardware = SimHardware(self.world)
        self.io = EmbodimentIO(embodiment)
        self.renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def _render(self, camera: str) -> np.ndarray:
        spec = self.embodiment.cameras[camera]
        size = (spec.height, spec.width)
        if size not in self.renderers:
            self.renderers[size] = mujoco.Renderer(self.world.model, *size)
        renderer = self.renderers[size]
        renderer.update_scene(self.world.data, camera=self.world.cameras[camera])
        return renderer.render()

    def record(self, task_spec: str, seed: int, out: Path, phrasing: str = "train", max_seconds: float = 10.0,
               linger_s: float = 1.0) -> Recorded:
        """Run one seeded expert episode and write it to a bag in `out`."""
        world, embodiment = self.world, self.embodiment
        task = start_episode(world, self.hardware, task_spec, seed)
        instruction = task.phrase(phrasing, phrasing_rng(seed))
        path = out / f"{embodiment.name}-{task.spec.replace(':', '-')}-s{seed:06d}"
        info = {"embodiment": embodiment.name, "task": task.spec, "seed": seed, "phrasing": phrasing,
                "recorded_by": f"vla_ros {__version__} collect (scripted expert)"}
        writer = EpisodeWriter(path, {name: c.topic for name, c in embodiment.cameras.items()},
                               self.io.base is not None, info, start=time.time())
        writer.instruction(0.0, instruction)
        next_frame = dict.fromkeys(embodiment.cameras, 0.0)
        control_dt = 1.0 / embodiment.control_rate_hz
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

        try:
            result = run_expert(world, self.hardware, task, max_seconds, on_step, linger_s)
        except BaseException:
            writer.abort()
            raise
        writer.finish(float(world.data.time), {"success": result.success, "seconds": round(result.seconds, 3),
                                               "progress": round(result.progress, 3), "task": result.task,
                                               "instruction": instruction})
        return Recorded(result, instruction, path)

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()


def collect(embodiment: Embodiment, task_spec: str, seeds: list[int], out: Path, phrasing: str = "train",
            max_seconds: float = 10.0, linger_s: float = 1.0,
            on_episode: Callable[[Recorded], None] | None = None) -> list[Recorded]:
    """Record one expert episode per seed into `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    collector = Collector(embodiment)
    recorded = []
    try:
        for seed in seeds:
            recorded.append(collector.record(task_spec, seed, out, phrasing, max_seconds, linger_s))
            if on_episode is not None:
                on_episode(recorded[-1])
    finally:
        collector.close()
    return recorded
