"""Perturbations of an episode, for evaluations that ask whether a policy copes with a changed scene.

- distractor: a grey can stands on the table in the path from the tool to the named cube.
- nudge: the named cube jumps a few centimetres sideways as the tool comes near it (once).
- lure: another cube, same shape, another colour, is put right next to the named one.

Each draws from its own stream of the episode's seed (the scene, task and wording are unchanged),
so a perturbed episode is as repeatable as any other. A perturbation that finds no fair place
(off the table, on another object, out of every arm's reach) leaves the scene as it was and says so.
"""
from __future__ import annotations

import numpy as np

from vla_ros.sim.tasks import Task, TaskError
from vla_ros.sim.world import CUBE_SPACING, World

PATH_FRACTIONS = (0.5, 0.4, 0.6, 0.3, 0.7)  # of the way from the tool to the cube where the can may stand
NUDGE_RANGE = 0.10  # [m] from the nearest tool to the cube's centre when it jumps
NUDGE_DISTANCE = (0.04, 0.07)  # [m]
LURE_DISTANCE = (0.06, 0.075)  # [m] centre to centre: a 2-3.5 cm gap between the two cubes
TRIES = 24  # directions tried for a cube's new place


def perturb_rng(seed: int) -> np.random.Generator:
    """The stream an episode's perturbation is drawn from (apart from scene, task and wording)."""
    return np.random.default_rng([seed, 8])


class Perturbation:
    """No perturbation; subclasses change the scene at the start (`start`) or during the episode (`update`)."""

    name = "none"

    def __init__(self, world: World, task: Task, seed: int):
        self.world, self.task, self.rng = world, task, perturb_rng(seed)
        self.done: str | None = None  # what was changed, in words; None until something was

    def start(self) -> None:
        """Change the scene of the episode just started (before its first step)."""

    def update(self) -> None:
        """After each control period."""

    def _move_cube(self, colour: str, around: np.ndarray, distance: tuple[float, float], clearance: float) -> bool:
        """Move a cube to a seeded place `distance` away from `around` (world) in the table's plane."""
        for _ in range(TRIES):
            angle, length = self.rng.uniform(0.0, 2 * np.pi), self.rng.uniform(*distance)
            place = around + np.array([length * np.cos(angle), length * np.sin(angle), 0.0])
            place[2] = self.world.cube_pose(colour)[0][2]
            if self.world.move_cube(colour, place, clearance):
                return True
        return False


class Distractor(Perturbation):
    """A grey can on the table part of the way from the tool (of the arm that reaches the cube) to the cube."""

    name = "distractor"

    def start(self) -> None:
        world = self.world
        cube = world.cube_pose(self.task.target)[0]
        arm = world.reaching_arm(cube) or (world.arms[0] if world.arms else None)
        if arm is None:
            return
        tool = world.ee_position(arm.name)
        for fraction in PATH_FRACTIONS:
            place = tool + fraction * (cube - tool)
            place[2] = world.layout.table_top
            if not world.place_distractor(place):
                continue
            self.done = f"a can {np.linalg.norm(place[:2] - cube[:2]):.2f} m before the {self.task.target} cube"
            return


class Nudge(Perturbation):
    """The cube jumps NUDGE_DISTANCE sideways the first time a tool comes within NUDGE_RANGE of it, untouched."""

    name = "nudge"

    def __init__(self, world: World, task: Task, seed: int):
        if task.name == "push":
            raise TaskError("a nudge moves the cube a push is judged by: push episodes take no nudge")
        super().__init__(world, task, seed)
        self.tried = False

    def update(self) -> None:
        if self.tried:
            return
        world, colour = self.world, self.task.target
        cube = world.cube_pose(colour)[0]
        near = min((np.linalg.norm(world.ee_position(arm.name) - cube) for arm in world.arms), default=np.inf)
        if near > NUDGE_RANGE or world.touching_robot(colour):
            return
        self.tried = True
        if self._move_cube(colour, cube, NUDGE_DISTANCE, CUBE_SPACING / 2):
            moved = np.linalg.norm(world.cube_pose(colour)[0][:2] - cube[:2])
            self.done = f"the {colour} cube moved {moved:.3f} m at {world.data.time:.2f} s"


class Lure(Perturbation):
    """Another cube (not the task's base) a 2-3.5 cm gap beside the named one."""

    name = "lure"

    def start(self) -> None:
        taken = {self.task.target, self.task.values.get("base")}
        others = [c for c in self.world.colours if c not in taken]
        if not others:
            return
        lure = str(self.rng.choice(others))
        if self._move_cube(lure, self.world.cube_pose(self.task.target)[0], LURE_DISTANCE, LURE_DISTANCE[0]):
            self.done = f"the {lure} cube next to the {self.task.target} one"


PERTURBATIONS: dict[str, type[Perturbation]] = {p.name: p for p in (Perturbation, Distractor, Nudge, Lure)}


def perturb(name: str, world: World, task: Task, seed: int) -> Perturbation:
    """Start perturbation `name` ("none" for none) on an episode just started with `seed`."""
    if name not in PERTURBATIONS:
        raise TaskError(f"no perturbation {name!r}; perturbations: {', '.join(PERTURBATIONS)}")
    perturbation = PERTURBATIONS[name](world, task, seed)
    perturbation.start()
    return perturbation
