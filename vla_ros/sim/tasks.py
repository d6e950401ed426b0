"""Tabletop tasks with success checks: named, parameterised, looked up in one registry.

A task spec is `name[:param[:param]]`: `reach`, `reach:red`, `push:blue:left`. Parameters left out
are drawn from the episode's seed, so a seed fixes the whole episode.

Each task says what it wants in several ways (`phrasings`): the "train" phrasings are the ones
demonstrations are recorded with, the "held_out" ones never appear in training data, so an
evaluation with them measures whether a policy understood the words, not memorised the strings.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError, did_you_mean
from vla_ros.sim.world import CUBE_SIZE, TRAY_FLOOR, TRAY_SIZE, World

REACH_RADIUS = 0.05  # [m] tool to cube centre
REACH_HOLD_S = 0.5
PUSH_DISTANCE = 0.10  # [m] along the pushed direction
LIFT_HEIGHT = 0.10  # [m] a picked cube above where it lay
GRASPED_HEIGHT = 0.02  # [m] a cube this far above where it lay is off the table
HOLD_S = 0.5  # [s] a goal state must last this long
STILL_SPEED = 0.05  # [m/s] a cube slower than this rests
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


class Manipulation(Task):
    """Pick a cube up and bring it somewhere; judged from the physics, with a reason when it fails.

    Success is the goal (`at_goal`) held for HOLD_S: the cube resting there, still (below
    STILL_SPEED), and let go where the task says so. The reasons: "missed grasp" (never off the
    table), "dropped" (let go above GRASPED_HEIGHT away from the goal), "wrong object" (another cube
    picked up), "wrong place" (let go away from the goal), else how far it is.
    """

    released = True  # the goal asks the robot to let go of the cube

    def __init__(self, world: World, values: dict[str, str]):
        super().__init__(world, values)
        self._rest = {colour: float(world.cube_pose(colour)[0][2]) for colour in world.colours}
        self._held_s = 0.0
        self._lifted = 0.0  # [m] the highest the cube has been off where it lay
        self._carried = False  # held off the table in the last period
        self._let_go: str | None = None  # how the cube last left the robot away from the goal

    def lifted(self, colour: str) -> float:
        return float(self.world.cube_pose(colour)[0][2]) - self._rest[colour]

    @abstractmethod
    def at_goal(self, position: np.ndarray) -> bool:
        """Whether a cube centre at `position` (world) is where the task wants it."""

    @abstractmethod
    def describe(self, position: np.ndarray) -> str:
        """How far the cube is from the goal, in words."""

    @abstractmethod
    def destination(self) -> np.ndarray | None:
        """(3,) where the cube is to be let go (world frame), or None: nowhere, it is to be held."""

    def update(self, dt: float) -> TaskStatus:
        position, _ = self.world.cube_pose(self.target)
        height = self.lifted(self.target)
        touching = self.world.touching_robot(self.target)
        self._lifted = max(self._lifted, height)
        goal = self.at_goal(position)
        carried = touching and height > GRASPED_HEIGHT
        if self._carried and not touching and not goal:
            self._let_go = "dropped" if height > GRASPED_HEIGHT + CUBE_SIZE else "wrong place"
        if carried or goal:
            self._let_go = None
        self._carried = carried
        still = float(np.linalg.norm(self.world.cube_velocity(self.target))) < STILL_SPEED
        done = goal and still and (not touching if self.released else True)
        self._held_s = self._held_s + dt if done else 0.0
        others = [c for c in self.world.colours if c != self.target and self.lifted(c) > GRASPED_HEIGHT
                  and self.world.touching_robot(c)]
        if others:
            detail = f"wrong object: the {others[0]} cube is picked up"
        elif self._lifted <= GRASPED_HEIGHT and not goal:
            detail = f"missed grasp: the {self.target} cube is still where it lay"
        elif self._let_go is not None and not carried:
            detail = f"{self._let_go}: {self.describe(position)}"
        else:
            detail = self.describe(position)
        return TaskStatus(self._held_s >= HOLD_S, self.progress(position, height), detail)

    def progress(self, position: np.ndarray, height: float) -> float:
        """[0, 1]: a quarter for getting it off the table, the rest for getting it to the goal."""
        return 1.0 if self.at_goal(position) else float(0.25 * np.clip(height / GRASPED_HEIGHT, 0, 1))


class Pick(Manipulation):
    """Lift the cube LIFT_HEIGHT off the table and hold it there."""

    name = "pick"
    parameters = ("colour",)
    released = False
    phrasings = {
        "train": ("pick up the {colour} cube", "lift the {colour} cube", "grab the {colour} block and lift it",
                  "pick the {colour} block up", "raise the {colour} cube", "take the {colour} cube off the table"),
        "held_out": ("could you lift the {colour} box", "grasp the {colour} cube and hold it up",
                     "get the {colour} block into the air"),
    }

    def at_goal(self, position: np.ndarray) -> bool:
        return self.lifted(self.target) >= LIFT_HEIGHT and self.world.touching_robot(self.target)

    def describe(self, position: np.ndarray) -> str:
        return f"{self.target} cube lifted {self.lifted(self.target):.3f} m"

    def destination(self) -> None:
        return None

    def progress(self, position: np.ndarray, height: float) -> float:
        return float(np.clip(height / LIFT_HEIGHT, 0, 1))


class PickPlace(Manipulation):
    """Put the cube in the receptacle and let go of it."""

    name = "pick_place"
    parameters = ("colour", "receptacle")
    phrasings = {
        "train": ("put the {colour} cube in the {receptacle}", "place the {colour} block in the {receptacle}",
                  "move the {colour} cube into the {receptacle}", "drop the {colour} cube into the {receptacle}",
                  "pick up the {colour} block and put it in the {receptacle}",
                  "the {colour} cube goes in the {receptacle}"),
        "held_out": ("could you put the {colour} box into the {receptacle}",
                     "I want the {colour} cube inside the {receptacle}",
                     "stow the {colour} block in the {receptacle}, please"),
    }

    def __init__(self, world: World, values: dict[str, str]):
        super().__init__(world, values)
        if world.tray is None:
            raise TaskError(f"seed {world.seed}: the scene has no room for the {values['receptacle']}")

    def at_goal(self, position: np.ndarray) -> bool:
        inside = TRAY_SIZE / 2 - 0.01 - CUBE_SIZE / 2
        offset = position - self.destination()
        return bool(np.all(np.abs(offset[:2]) < inside) and offset[2] < TRAY_FLOOR + CUBE_SIZE)

    def describe(self, position: np.ndarray) -> str:
        distance = float(np.linalg.norm(position[:2] - self.destination()[:2]))
        return f"{self.target} cube {distance:.3f} m from the {self.values['receptacle']}"

    def destination(self) -> np.ndarray:
        return self.world.tray


class Stack(Manipulation):
    """Put the cube on top of another and let go of it."""

    name = "stack"
    parameters = ("colour", "base")
    phrasings = {
        "train": ("stack the {colour} cube on the {base} one", "put the {colour} block on top of the {base} block",
                  "place the {colour} cube on the {base} cube", "stack {colour} on {base}",
                  "set the {colour} cube onto the {base} cube"),
        "held_out": ("could you pile the {colour} box on the {base} box",
                     "the {colour} cube belongs on top of the {base} one",
                     "build a tower: {base} at the bottom, {colour} on top"),
    }

    def at_goal(self, position: np.ndarray) -> bool:
        offset = position - self.destination()
        return bool(np.linalg.norm(offset[:2]) < CUBE_SIZE / 2
                    and abs(offset[2] - CUBE_SIZE) < 0.01 and self.lifted(self.values["base"]) < 0.01)

    def describe(self, position: np.ndarray) -> str:
        distance = float(np.linalg.norm(position[:2] - self.destination()[:2]))
        return f"{self.target} cube {distance:.3f} m from the {self.values['base']} cube"

    def destination(self) -> np.ndarray:
        return self.world.cube_pose(self.values["base"])[0]


TASKS: dict[str, type[Task]] = {task.name: task for task in (Reach, Push, Pick, PickPlace, Stack)}
RECEPTACLES = ("tray",)
FAILURE_REASONS = ("missed grasp", "dropped", "wrong object", "wrong place")  # Manipulation's, first in its detail


def failure_reason(detail: str) -> str:
    """Why an episode whose last status said `detail` failed: one of FAILURE_REASONS, else "timeout"."""
    return next((reason for reason in FAILURE_REASONS if detail.startswith(f"{reason}:")), "timeout")


def make_task(spec: str, world: World, rng: np.random.Generator) -> Task:
    """The task a spec names, its missing parameters drawn from `rng`."""
    name, *given = spec.split(":")
    if name not in TASKS:
        raise TaskError(f"no task {name!r}{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}")
    task = TASKS[name]
    if len(given) > len(task.parameters):
        raise TaskError(f"task {name!r} takes {len(task.parameters)} parameters ({', '.join(task.parameters)}), got "
                        f"{spec!r}")
    values: dict[str, str] = {}
    for parameter in task.parameters:
        options = {"colour": world.colours, "side": tuple(SIDES), "receptacle": RECEPTACLES,
                   "base": tuple(c for c in world.colours if c != values.get("colour"))}[parameter]
        value = given.pop(0) if given else str(rng.choice(options))
        if value in RECEPTACLES and parameter != "receptacle":
            raise TaskError(f"the {value} is a receptacle: it holds cubes, it is not one ({parameter} is one of "
                            f"{', '.join(options)})")
        if value not in options:
            raise TaskError(f"{parameter} {value!r} is not one of {', '.join(options)}{did_you_mean(value, options)}")
        values[parameter] = value
    return task(world, values)



def read_instruction(text: str) -> str | None:
    """The task spec an instruction in any task's phrasings states ("reach:red"), or None.

    Matches whole templates (training and held-out alike), case and surrounding space ignored.
    """
    wanted = " ".join(text.lower().split())
    for task in TASKS.values():
        for template in (t for split in PHRASING_SPLITS for t in task.phrasings[split]):
            pattern = re.escape(template.lower()).replace(r"\{", "{").replace(r"\}", "}")
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[a-z]+)", pattern)
            found = re.fullmatch(pattern, wanted)
            if found:
                return ":".join([task.name, *(found.group(p) for p in task.parameters)])
    return None
