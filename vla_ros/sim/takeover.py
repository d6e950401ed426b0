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
- `stalled`: the tool has moved less than STALL_DISTANCE in the last STALL_S;
- `timeout`: the model has driven for `drive_s`.

A model that lifts the named cube itself ends the drive with `lifted`, and no expert takes over
(collect records nothing of that episode). What the expert does from a takeover on is a
demonstration from a state the model reached: collect records only that part
(vla_ros.data.collect).
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
from vla_ros.sim.tasks import GRASPED_HEIGHT, Task
from vla_ros.sim.world import World

TAKEOVER_TASKS = ("pick", "pick_place", "stack")  # tasks whose expert can take over from any pose before the grasp
TAKEOVER_RADIUS = (0.005, 0.03)  # [m] from where the fingers close: the expert takes over within this
CLOSING = 0.5  # of the gripper's range: a model commanding its fingers further closed is closing them
STALL_S = 1.0  # [s]
STALL_DISTANCE = 0.005  # [m] the tool moved less than this over STALL_S: stalled
REQUEST_FRACTION = 0.5  # of a chunk executed before the next is asked for (policy_node's default)


def takeover_rng(seed: int) -> np.random.Generator:
    """The stream an episode's takeover distance is drawn from (apart from scene, task, wording)."""
    return np.random.default_rng([seed, 5])


@dataclass(frozen=True)
class Handover:
    """Where the model's drive ended: at `seconds` of sim time, why, the tool that far from the grasp."""

    seconds: float
    reason: str  # near, closing, stalled, timeout; "lifted" when the model picked the cube up itself
    distance_m: float

    def to_json(self) -> dict:
        return {"at_s": round(self.seconds, 3), "reason": self.reason, "tool_to_grasp_m": round(self.distance_m, 4)}


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

    def drive(self, task: Task, instruction: str, seed: int, drive_s: float) -> Handover:
        """Let the policy drive the started episode until the expert should take over (see the module)."""
        if task.name not in TAKEOVER_TASKS:
            raise VlaRosError(f"task {task.name!r} has no takeover (only {', '.join(TAKEOVER_TASKS)})")
        world, embodiment = self.world, self.embodiment
        controller = Controller(embodiment, ControllerConfig(upper_body_ramp_s=0.0))
        self.policy.reset()
        radius = float(takeover_rng(seed).uniform(*TAKEOVER_RADIUS))
        arms = [g for g in embodiment.commanded_groups if g.kind == "arm" and embodiment.end_effector(g) is not None]
        arm = min(arms, key=lambda a: self._tool_to_cube(ArmIK.for_group(embodiment, a), task)[1])
        ik = ArmIK.for_group(embodiment, arm)
        gripper = embodiment.end_effector(arm)
        open_at, closed_at = gripper.grip_range()
        finger = [list(controller.joints).index(j) for j in gripper.joints]
        next_request = float(world.data.time)
        start = float(world.data.time)
        path: deque[tuple[float, np.ndarray]] = deque()
        opened = False
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
            task.update(self.control_dt)
            now = float(world.data.time)
            tool, distance = self._tool_to_cube(ik, task)
            if task.lifted(task.target) > GRASPED_HEIGHT and world.touching_robot(task.target):
                return Handover(now, "lifted", distance)
            path.append((now, tool))
            while path and path[0][0] < now - STALL_S:
                path.popleft()
            closing = float(np.mean((out.q_command[finger] - open_at) / (closed_at - open_at)))
            opened = opened or closing <= CLOSING
            if distance < radius:
                return Handover(now, "near", distance)
            if opened and closing > CLOSING:
                return Handover(now, "closing", distance)
            if now - start > STALL_S and np.linalg.norm(path[-1][1] - path[0][1]) < STALL_DISTANCE:
                return Handover(now, "stalled", distance)
            if now - start >= drive_s:
                return Handover(now, "timeout", distance)

    def _tool_to_cube(self, ik: ArmIK, task: Task) -> tuple[np.ndarray, float]:
        """`ik`'s tool position (root frame) and its distance [m] to the named cube's centre (the grasp)."""
        tool = ik.pose(self.world.joint_vector())[:3, 3]
        cube = np.linalg.inv(self.world.root_pose()) @ np.append(self.world.cube_pose(task.target)[0], 1.0)
        return tool, float(np.linalg.norm(tool - cube[:3]))
