"""A policy drives a simulated episode in-process until the scripted expert takes over (DAgger).

A model trained on demonstrations follows them closely where they went, and drifts where they
never went: near a cube, a centimetre off, it keeps coming down beside it or closes its fingers
on an edge, states no demonstration shows. Here the model drives (its chunks tracked by the
controller's own core: the same timeline, limits and command law as controller_node), and the
expert takes over at the first of:

- `near`: the tool within a distance drawn per seed (TAKEOVER_RADIUS) of where the fingers close
  on the named cube: the model's own last centimetres, which the expert finishes;
- `closing`: the model closes its fingers anywhere else, once they were open (an episode may start
  with them half closed; the expert opens them again and goes on);
- `stalled`: the tool has stayed within STALL_DISTANCE of where it is for the last STALL_S;
- `timeout`: the model has driven for `drive_s`.

A model that lifts the named cube itself ends the drive with `lifted`, and no expert takes over.

In an `own_grasp` share of the seeds (drawn per seed) the model grasps and carries itself, and the
expert takes over where that goes wrong, after the grasp too: no `near`; `closing` only farther
than OWN_CLOSE from the grasp; a close nearer that has not lifted the cube within MISS_S is
`missed`; with the cube in its fingers, a model that opens them (RELEASING) farther than
RELEASE_RADIUS (xy) from where the cube goes, or anywhere for a pick, has `released` it, and the
expert takes over with the cube still in hand; a cube that slips out of the closed fingers is
`dropped`, handed over once it rests; `stalled` and `timeout` as above. A model that
completes the task ends the drive with `succeeded`.

What the expert does from a takeover on is a demonstration from a state the model reached:
collect records only that part (vla_ros.data.collect), and nothing of an episode the model
finished itself (`lifted`, `succeeded`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_ros.control.chunk import JointChunk
from vla_ros.control.controller import Controller, ControllerConfig
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.ik import ArmIK
from vla_ros.errors import VlaRosError
from vla_ros.sim.episode import step
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.tasks import GRASPED_HEIGHT, STILL_SPEED, Task
from vla_ros.sim.world import World

TAKEOVER_TASKS = ("pick", "pick_place", "stack")  # tasks whose expert can take over from any pose before the grasp
TAKEOVER_RADIUS = (0.005, 0.03)  # [m] from where the fingers close: the expert takes over within this
CLOSING = 0.5  # of the gripper's range: a model commanding its fingers further closed is closing them
STALL_S = 1.0  # [s]
STALL_DISTANCE = 0.005  # [m] the tool stayed this near where it is over STALL_S: stalled
REQUEST_FRACTION = 0.5  # of a chunk executed before the next is asked for (policy_node's default)
OWN_CLOSE = 0.025  # [m] from the grasp: the model grasping itself may close its fingers this near
MISS_S = 1.5  # [s] after such a close, the cube still not lifted: a missed grasp
RELEASING = 0.8  # of the gripper's range: a model holding the cube that commands its fingers less closed lets go
RELEASE_RADIUS = 0.03  # [m] xy from where the cube goes: letting go farther away is taken over
MODEL_DID_IT = ("lifted", "succeeded")  # handovers where the model finished the task itself: nothing to record


def takeover_rng(seed: int) -> np.random.Generator:
    """The stream an episode's takeover distance and own grasp are drawn from (apart from scene, task, wording)."""
    return np.random.default_rng([seed, 5])


@dataclass(frozen=True)
class Handover:
    """Where the model's drive ended: at `seconds` of sim time, why, the tool that far from the grasp."""

    seconds: float
    reason: str  # near, closing, missed, released, dropped, stalled, timeout; or one of MODEL_DID_IT
    distance_m: float
    own_grasp: bool = False  # the model was left to grasp (and carry) itself

    def to_json(self) -> dict:
        return {"at_s": round(self.seconds, 3), "reason": self.reason, "tool_to_grasp_m": round(self.distance_m, 4),
                "own_grasp": self.own_grasp}


class _Watch:
    """Period by period, whether the expert should take over from the model, and why (see the module)."""

    def __init__(self, task: Task, radius: float, own_grasp: bool, start: float, drive_s: float):
        self.task, self.radius, self.own_grasp, self.start, self.drive_s = task, radius, own_grasp, start, drive_s
        self.path: deque[tuple[float, np.ndarray]] = deque()
        self.opened = False  # the fingers were open since the drive began
        self.closed_at: float | None = None  # [s] the model closed its fingers near the grasp
        self.held = False  # the model has had the cube in its fingers ...
        self.let_go = False  # ... and opened them near where it goes

    def check(self, now: float, tool: np.ndarray, distance: float, closing: float, succeeded: bool) -> str | None:
        """The reason to hand over now, or None; `closing` is the commanded fingers' share of their range."""
        task = self.task
        # In the fingers: off the table, or wherever once it was (down into a receptacle, say).
        holding = task.world.touching_robot(task.target) and (self.held or task.lifted(task.target) > GRASPED_HEIGHT)
        self.path.append((now, tool))
        while self.path and self.path[0][0] < now - STALL_S:
            self.path.popleft()
        self.opened = self.opened or closing <= CLOSING
        reason = self._own(now, distance, closing, holding, succeeded) if self.own_grasp else (
            "lifted" if holding else "near" if distance < self.radius
            else "closing" if self.opened and closing > CLOSING else None)
        if reason is not None:
            return reason
        here = self.path[-1][1]
        if now - self.start > STALL_S and max(np.linalg.norm(here - p) for _, p in self.path) < STALL_DISTANCE:
            return "stalled"
        return "timeout" if now - self.start >= self.drive_s else None

    def _own(self, now: float, distance: float, closing: float, holding: bool, succeeded: bool) -> str | None:
        task = self.task
        if succeeded:
            return "succeeded"
        if holding:
            self.held, self.closed_at = True, None
            goal = task.destination()
            cube = task.world.cube_pose(task.target)[0]
            away = goal is None or float(np.linalg.norm(cube[:2] - goal[:2])) > RELEASE_RADIUS
            return "released" if closing < RELEASING and away else None
        if self.held and not self.let_go:
            if closing < RELEASING:
                self.let_go = True
            else:  # out of the closed fingers: handed over once it rests, unless where it goes
                cube = task.world.cube_pose(task.target)[0]
                resting = np.linalg.norm(task.world.cube_velocity(task.target)) < STILL_SPEED
                return "dropped" if resting and not task.at_goal(cube) else None
        if self.let_go or not (self.opened and closing > CLOSING):
            self.closed_at = None
            return None
        if self.closed_at is None:
            if distance > OWN_CLOSE:
                return "closing"
            self.closed_at = now
        return "missed" if now - self.closed_at > MISS_S else None


class ChunkSource(Protocol):
    """What drives: a policy's chunks as joint targets (vla_ros.policy.driven.PolicyChunks)."""

    def reset(self) -> None:
        """A new episode."""

    def chunk(self, images: dict[str, np.ndarray], state: np.ndarray, instruction: str,
              stamp: float) -> tuple[np.ndarray, float]:
        """(H, D) joint targets in the embodiment layout, [s] between them."""


class ModelDriver:
    """Runs a policy on a World in-process: rendered cameras in, chunks through the controller core out.

    Inference is synchronous (the sim waits for it), so a drive is repeatable; a chunk is asked
    for when REQUEST_FRACTION of the last has executed, as policy_node does by default.
    """

    def __init__(self, world: World, hardware: SimHardware, policy: ChunkSource, render):
        self.world, self.hardware, self.policy, self.render = world, hardware, policy, render
        self.embodiment: Embodiment = world.embodiment
        self.io = EmbodimentIO(self.embodiment)
        self.index = self.embodiment.kinematics.index(self.io.joints)
        self.columns = [self.io.names.index(j) for j in self.io.joints]
        self.control_dt = 1.0 / self.embodiment.control_rate_hz
        self.substeps = max(1, round(self.control_dt / world.model.opt.timestep))

    def drive(self, task: Task, instruction: str, seed: int, drive_s: float, own_grasp: float = 0.0) -> Handover:
        """Let the policy drive the started episode until the expert should take over (see the module).

        The model grasps itself in `own_grasp` of the seeds (0-1, drawn per seed).
        """
        if task.name not in TAKEOVER_TASKS:
            raise VlaRosError(f"task {task.name!r} has no takeover (only {', '.join(TAKEOVER_TASKS)})")
        world, embodiment = self.world, self.embodiment
        controller = Controller(embodiment, ControllerConfig(upper_body_ramp_s=0.0))
        self.policy.reset()
        rng = takeover_rng(seed)
        radius = float(rng.uniform(*TAKEOVER_RADIUS))
        own = own_grasp > 0.0 and bool(rng.random() < own_grasp)
        arms = [g for g in embodiment.commanded_groups if g.kind == "arm" and embodiment.end_effector(g) is not None]
        arm = min(arms, key=lambda a: self._tool_to_cube(ArmIK.for_group(embodiment, a), task)[1])
        ik = ArmIK.for_group(embodiment, arm)
        gripper = embodiment.end_effector(arm)
        open_at, closed_at = gripper.grip_range()
        finger = [list(controller.joints).index(j) for j in gripper.joints]
        next_request = float(world.data.time)
        watch = _Watch(task, radius, own, float(world.data.time), drive_s)
        while True:
            now = float(world.data.time)
            q, qd = world.joint_vector(), world.joint_velocity_vector()
            controller.update_state(q, qd, now)
            out = controller.step(now, self.control_dt)  # (re)starts from the state: a chunk joins onto it
            if now + 1e-9 >= next_request:
                state = self.io.state(q[self.index])
                images = {name: self.render(name) for name in embodiment.cameras}
                actions, dt = self.policy.chunk(images, state, instruction, now)
                times = dt * np.arange(1, len(actions) + 1)
                controller.submit(JointChunk(now, self.io.joints, times, actions[:, self.columns]), now)
                next_request = now + times[-1] * (1.0 - REQUEST_FRACTION)
                out = controller.step(now, self.control_dt)
            for group, command in out.commands.items():
                if command is not None:
                    self.hardware.command(group, command, now)
            step(world, self.hardware, self.substeps, self.control_dt)
            status = task.update(self.control_dt)
            now = float(world.data.time)
            tool, distance = self._tool_to_cube(ik, task)
            closing = float(np.mean((out.q_command[finger] - open_at) / (closed_at - open_at)))
            reason = watch.check(now, tool, distance, closing, status.success)
            if reason is not None:
                return Handover(now, reason, distance, own)

    def _tool_to_cube(self, ik: ArmIK, task: Task) -> tuple[np.ndarray, float]:
        """`ik`'s tool position (root frame) and its distance [m] to the named cube's centre (the grasp)."""
        tool = ik.pose(self.world.joint_vector())[:3, 3]
        cube = np.linalg.inv(self.world.root_pose()) @ np.append(self.world.cube_pose(task.target)[0], 1.0)
        return tool, float(np.linalg.norm(tool - cube[:3]))
