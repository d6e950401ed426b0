"""A scripted operator: watches the policy drive a simulated episode as a person would, and steps in.

It sees what a person beside the robot sees (where the tool and the cubes are, whether the task is
done) and acts through what a person has: it takes over (`intervention`), drives with a leader arm
(the task's scripted expert moving the leader: joint targets of the arm and its gripper), says a
correction in words, and labels how the episode ended. After `patience_s` it takes over when

- `wrong`: the tool is within `wrong_radius` of a cube other than the one asked for, and nearer to
  it than to that one (heading for the wrong object);
- `stalled`: the tool has come no nearer the cube asked for (by `stall_distance`) for `stall_s`, and
  is not at it: stopped, or wandering.

It says a correction drawn from CORRECTIONS (words no task's phrasings use, so the model never saw
them) and drives until the task holds, then hands back: it takes over at most once per episode.
It labels every episode: success when the task holds (whoever did it), failure when `seconds` ran
out. One Operator per episode; the operator node makes a new one at each reset. No ROS here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.embodiment import Embodiment
from vla_ros.embodiment.config import END_EFFECTOR_KINDS
from vla_ros.embodiment.goals import goal_frames
from vla_ros.params import Params, param
from vla_ros.sim.expert import EXPERTS, Observation
from vla_ros.sim.tasks import REACH_RADIUS, TASKS

CORRECTIONS = {
    "wrong": ("no, the {colour} one", "not that one, the {colour} cube", "wrong cube, I meant the {colour} one",
              "the other one: {colour}"),
    "stalled": ("keep going to the {colour} cube", "don't stop, the {colour} cube", "further, to the {colour} one"),
}


@dataclass(frozen=True)
class OperatorConfig(Params):
    """When the scripted operator steps in, and what it says."""

    patience_s: float = param(1.0, "the policy drives at least this long before the operator judges it [s]",
                              low=0.0, high=60.0)
    wrong_radius: float = param(0.10, "a tool this near a cube other than the one asked for is heading for the "
                                      "wrong object [m]", low=0.0, high=1.0)
    stall_s: float = param(1.5, "a tool that came no nearer the cube asked for in this long has stalled [s]",
                           low=0.1, high=60.0)
    stall_distance: float = param(0.01, "... nearer by at least this much [m]", low=0.0, high=1.0)
    speak: bool = param(True, "say a correction at each takeover")


@dataclass
class Acts:
    """What the operator does this tick (None: nothing of that kind)."""

    intervention: bool | None = None  # take over (True) or hand back (False)
    say: str | None = None  # a correction, in words
    leader: tuple[tuple[str, ...], np.ndarray] | None = None  # the leader arm: (joints, positions)
    label: bool | None = None  # the episode's outcome


class Operator:
    """Watches one episode of `task` (a full spec, e.g. reach:red) and acts (see the module docstring)."""

    def __init__(self, embodiment: Embodiment, task: str, seconds: float, config: OperatorConfig,
                 rng: np.random.Generator):
        self.embodiment = embodiment
        self.config = config
        self.seconds = seconds
        self.rng = rng
        name, *values = task.split(":")
        self.values = dict(zip(TASKS[name].parameters, values))
        self.expert_type = EXPERTS[name]
        self.expert = None
        self.target = self.values.get("colour", "")
        self.frames = goal_frames(embodiment)
        self.joints: tuple[str, ...] = ()
        self.best: tuple[float, float] | None = None  # (nearest the tool came to the cube asked for [m], when [s])
        self.driving = False
        self.took_over = ""  # why, once it has
        self.labelled = False

    def tick(self, time: float, q: np.ndarray, cubes: dict[str, np.ndarray], success: bool) -> Acts:
        """The acts for episode time `time` [s], joints `q` (Kinematics order), cube centres (root frame)."""
        acts = Acts()
        if self.labelled:
            return acts
        if success:
            self.labelled = True
            return Acts(intervention=False if self.driving else None, label=True)
        if time >= self.seconds:
            self.labelled = True
            return Acts(intervention=False if self.driving else None, label=False)
        tools = np.array([self.embodiment.kinematics.frame_pose(q, f)[:3, 3] for f in self.frames])
        if not self.took_over and time >= self.config.patience_s:
            reason = self._judge(time, tools, cubes)
            if reason:
                self.took_over, self.driving = reason, True
                acts.intervention = True
                if self.config.speak:
                    templates = CORRECTIONS[reason]
                    acts.say = templates[int(self.rng.integers(len(templates)))].format(colour=self.target)
        if self.driving:
            acts.leader = self._drive(time, q, cubes)
        return acts

    def _judge(self, time: float, tools: np.ndarray, cubes: dict[str, np.ndarray]) -> str:
        """Why to take over now ("wrong", "stalled"), or ""."""
        if self.target not in cubes:
            return ""
        to_target = float(np.min(np.linalg.norm(tools - cubes[self.target], axis=1)))
        for colour, cube in cubes.items():
            distance = np.min(np.linalg.norm(tools - cube, axis=1))
            if colour != self.target and distance < self.config.wrong_radius and distance < to_target:
                return "wrong"
        if self.best is None or to_target < self.best[0] - self.config.stall_distance:
            self.best = (to_target, time)
        if to_target > REACH_RADIUS and time - self.best[1] >= self.config.stall_s:
            return "stalled"
        return ""

    def _drive(self, time: float, q: np.ndarray, cubes: dict[str, np.ndarray]):
        """The leader arm's joints where the task's expert moves them: (joints, positions).

        Positions only: the expert's velocities are differences over the last tick, noisy as a
        real leader's; teleop_node estimates them over its own period.
        """
        if self.expert is None:
            self.expert = self.expert_type(self.embodiment, self.values)
        targets = self.expert.act(Observation(time, q, cubes))
        groups = [g for g in self.embodiment.commanded_groups
                  if g.kind == "arm" or g.kind in END_EFFECTOR_KINDS]
        joints = tuple(j for g in groups for j in g.joints)
        return joints, np.concatenate([targets.joints[g.name][0] for g in groups])
