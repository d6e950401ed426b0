"""Tabletop tasks with success checks: named, parameterised, looked up in one registry.

A task spec is `name[:param[:param]]`: `reach`, `reach:red`, `push:blue:left`. Parameters left out
are drawn from the episode's seed, so a seed fixes the whole episode.

Each task says what it wants in several ways (`phrasings`): the "train" phrasings are the ones
demonstrations are recorded with, the "held_out" ones never appear in training data, so an
evaluation with them measures whether a policy understood the words, not memorised the strings.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError, did_you_mean
from vla_ros.sim.world import World

REACH_RADIUS = 0.05  # [m] tool to cube centre
REACH_HOLD_S = 0.5
PUSH_DISTANCE = 0.10  # [m] along the pushed direction
PHRASING_SPLITS = ("train", "held_out")
PHRASINGS = ("canonical", *PHRASING_SPLITS)  # how an episode words its instruction: the canonical one or a split's
# In the work frame (world.work_heading) of the robot at the start: left and right as it faces the table.
SIDES = {"left": np.array([0.0, 1.0]), "right": np.array([0.0, -1.0])}


class TaskError(VlaRosError):
    """A task spec that names no task or gives it bad parameters."""


@dataclass(frozen=True)
class TaskStatus:
    """A task's judgement of the world now: success, progress [0, 1], what it sees in words."""

    success: bool
    progress: float  # [0, 1]
    detail: str


class Task(ABC):
    """One episode's goal in a World; update() is called every control period."""

    name: str
    parameters: tuple[str, ...]
    phrasings: dict[str, tuple[str, ...]]  # split -> templates with {parameter} fields; the first is canonical

    def __init__(self, world: World, values: dict[str, str]):
        self.world = world
        self.values = values

    @property
    def target(self) -> str:
        """The colour of the cube the task is about."""
        return self.values["colour"]

    @property
    def instruction(self) -> str:
        """The canonical instruction, e.g. 'reach the red cube'."""
        return self.phrasings["train"][0].format(**self.values)

    def phrase(self, split: str, rng: np.random.Generator) -> str:
        """The instruction in one of the `split` phrasings, drawn from `rng`."""
        if split not in PHRASING_SPLITS:
            raise TaskError(f"phrasings {split!r} are not one of {', '.join(PHRASING_SPLITS)}")
        templates = self.phrasings[split]
        return templates[int(rng.integers(len(templates)))].format(**self.values)

    @abstractmethod
    def update(self, dt: float) -> TaskStatus:
        """Advance by dt [s] and judge the world as it is now."""

    @property
    def spec(self) -> str:
        return ":".join([self.name, *(self.values[p] for p in self.parameters)])


class Reach(Task):
    """Bring a tool within REACH_RADIUS of the cube's centre and stay there for REACH_HOLD_S."""

    name = "reach"
    parameters = ("colour",)
    phrasings = {
        "train": ("reach the {colour} cube", "move to the {colour} cube", "go to the {colour} block",
                  "touch the {colour} cube", "reach for the {colour} block", "put the gripper on the {colour} cube",
                  "move your hand to the {colour} cube", "go for the {colour} one", "the {colour} cube",
                  "get to the {colour} block", "approach the {colour} cube", "point at the {colour} block"),
        "held_out": ("head over to the {colour} cube", "could you reach the {colour} box",
                     "bring the tool above the {colour} cube", "find the {colour} cube and go there",
                     "{colour} block, please", "move over to the {colour} cube now",
                     "position yourself at the {colour} cube", "tap the {colour} cube"),
    }

    def __init__(self, world: World, values: dict[str, str]):
        super().__init__(world, values)
        self._held = 0.0
        self._start = self._distance()

    def _distance(self) -> float:
        cube, _ = self.world.cube_pose(self.target)
        return min((float(np.linalg.norm(self.world.ee_position(arm.name) - cube)) for arm in self.world.arms),
                   default=np.inf)  # a robot without an arm never reaches

    def update(self, dt: float) -> TaskStatus:
        distance = self._distance()
        self._held = self._held + dt if distance < REACH_RADIUS else 0.0
        progress = float(np.clip(1.0 - (distance - REACH_RADIUS) / max(self._start - REACH_RADIUS, 1e-6), 0, 1)
                         if np.isfinite(distance) else 0.0)
        return TaskStatus(self._held >= REACH_HOLD_S, progress, f"tool {distance:.3f} m from the {self.target} cube")


class Push(Task):
    """Push the cube PUSH_DISTANCE towards a side (left or right as the robot faces the table); keep it on it."""

    name = "push"
    parameters = ("colour", "side")
    phrasings = {
        "train": ("push the {colour} cube to the {side}", "move the {colour} cube to the {side}",
                  "shove the {colour} block {side}", "slide the {colour} cube to your {side}",
                  "push the {colour} block towards the {side}"),
        "held_out": ("nudge the {colour} cube over to the {side}", "could you push the {colour} box {side}",
                     "the {colour} cube goes to the {side}, please"),
    }

    def __init__(self, world: World, values: dict[str, str]):
        super().__init__(world, values)
        self._start, _ = world.cube_pose(self.target)
        rotation = world.root_pose()[:3, :3] @ world.layout.turn
        self.direction = rotation[:2, :2] @ SIDES[values["side"]]

    def update(self, dt: float) -> TaskStatus:
        position, _ = self.world.cube_pose(self.target)
        moved = float((position[:2] - self._start[:2]) @ self.direction)
        on_table = position[2] > self.world.layout.table_top
        return TaskStatus(moved >= PUSH_DISTANCE and on_table, float(np.clip(moved / PUSH_DISTANCE, 0, 1)),
                          f"{self.target} cube moved {moved:.3f} m to the {self.values['side']}")


TASKS: dict[str, type[Task]] = {task.name: task for task in (Reach, Push)}


def make_task(spec: str, world: World, rng: np.random.Generator) -> Task:
    """The task a spec names, its missing parameters drawn from `rng`."""
    name, *given = spec.split(":")
    if name not in TASKS:
        raise TaskError(f"no task {name!r}{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}")
    task = TASKS[name]
    if len(given) > len(task.parameters):
        raise TaskError(f"task {name!r} takes {len(task.parameters)} parameters ({', '.join(task.parameters)}), got "
                        f"{spec!r}")
    choices = {"colour": world.colours, "side": tuple(SIDES)}
    values = {}
    for parameter in task.parameters:
        options = choices[parameter]
        value = given.pop(0) if given else str(rng.choice(options))
        if value not in options:
            raise TaskError(f"{parameter} {value!r} is not one of {', '.join(options)}{did_you_mean(value, options)}")
        values[parameter] = value
    return task(world, values)

