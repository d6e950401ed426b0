"""The simulated robot's hardware interface: what a real arm's and base's drivers do.

- Each commanded group takes one array per command in its mode (effort [Nm|N], position [rad|m]
  or velocity [rad/s|m/s]), like a ros2_control forward command controller. A command of the
  wrong length, or with NaN/Inf, is refused whole and never reaches the physics.
- Brakes: a group that has no fresh command (none yet, or none for `command_timeout_s`) is held
  where it was when commands stopped. Effort groups hold with their PD gains plus MuJoCo's gravity
  and Coriolis bias; position groups keep their last target; velocity groups stop.
- An effort group whose last torque is older than `effort_timeout_s` (set it to a few control
  periods; by default it equals `command_timeout_s`, so this is off) but not yet braked floats:
  gravity and Coriolis compensated and damped, no stale torque. A torque is right only for the
  state it was computed from, and one held for tens of milliseconds (a controller that fell
  behind) can feed a swing instead of damping it (docs/notes/inverse-dynamics.md).
- The base takes (vx [m/s], vy [m/s], wz [rad/s]) in its own frame, clamps them to its limits,
  ramps by its acceleration limits, and stops when commands are older than `base_timeout_s`.
- After a reset (the robot teleported to a new scene) commands are dropped for `reset_settle_s`
  and the brakes hold the new pose: whatever commands the robot was still tracking its old pose,
  and its next torques, computed for that pose, would throw the arm. A real robot never teleports;
  by the time the brakes let go, a controller has seen the new pose (controller_node's
  following-error check holds it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.control.pd import position_error
from vla_ros.errors import VlaRosError
from vla_ros.sim.world import World


class CommandRejected(VlaRosError):
    """A command that never reaches the physics, with the group and the reason."""

    def __init__(self, group: str, reason: str):
        self.group, self.reason = group, reason
        super().__init__(f"{group}: command rejected: {reason}")


@dataclass
class _GroupState:
    command: np.ndarray | None = None
    stamp: float = -np.inf
    hold: np.ndarray | None = None  # positions held while braking


class SimHardware:
    """The simulated robot's drivers: commands checked and applied, brakes, the base (module docstring)."""

    def __init__(self, world: World, command_timeout_s: float = 0.25, base_timeout_s: float = 0.5,
                 reset_settle_s: float = 0.0, effort_timeout_s: float = 0.25):
        self.world = world
        self.command_timeout_s = command_timeout_s
        self.effort_timeout_s = effort_timeout_s
        self.base_timeout_s = base_timeout_s
        self.reset_settle_s = reset_settle_s
        self.groups = {g.name: g for g in world.embodiment.commanded_groups}
        self.base = world.embodiment.base
        self.reset()

    def reset(self) -> None:
        """Every group braked at its current position, the base stopped.

        Commands are dropped for `reset_settle_s` of sim time.
        """
        self._settled_at = float(self.world.data.time) + self.reset_settle_s
        self._state = {name: _GroupState() for name in self.groups}
        self._base_target = np.zeros(3)
        self._base_stamp = -np.inf
        self._base_velocity = np.zeros(3)

    def command(self, group: str, values, now: float) -> None:
        """Take a command for `group` at sim time `now` [s]; raise CommandRejected if malformed."""
        if group not in self.groups:
            raise CommandRejected(group, f"no commanded group of that name (groups: {', '.join(self.groups)})")
        values = np.asarray(values, dtype=float)
        expected = len(self.groups[group].joints)
        if values.shape != (expected,):
            raise CommandRejected(group, f"{values.size} values for {expected} joints")
        if not np.all(np.isfinite(values)):
            raise CommandRejected(group, f"non-finite values at joints {np.flatnonzero(~np.isfinite(values)).tolist()}")
        if now < self._settled_at:
            return
        state = self._state[group]
        state.command, state.stamp, state.hold = values.copy(), now, None

    def command_base(self, twist, now: float) -> None:
        """Take a base velocity (vx, vy, wz) in the base frame; raise CommandRejected if malformed."""
        if self.base is None:
            raise CommandRejected("base", "this embodiment has no mobile base")
        twist = np.asarray(twist, dtype=float)
        if twist.shape != (3,) or not np.all(np.isfinite(twist)):
            raise CommandRejected("base",
                                  f"expected 3 finite values (vx, vy, wz), got non-finite or {twist.size} values: "
                                  f"{twist.tolist()}")
        limits = dict(zip(self.base.channels, self.base.max_velocity))
        bounds = np.array([limits.get(c, 0.0) for c in ("vx", "vy", "wz")])
        if now < self._settled_at:
            return
        self._base_target = np.clip(twist, -bounds, bounds)
        self._base_stamp = now

    def oldest_command_age(self, now: float) -> float:
        """[s] since the oldest of the groups' current commands came.

        0 with no group commanded: the brakes hold, nothing stale is applied.
        """
        ages = [now - state.stamp for state in self._state.values() if np.isfinite(state.stamp)
                and now - state.stamp <= self.command_timeout_s]
        return max(ages, default=0.0)

    def holding(self, now: float) -> list[str]:
        """Groups whose brakes are on: no command yet, or none for command_timeout_s."""
        return [name for name, state in self._state.items() if now - state.stamp > self.command_timeout_s]

    def apply(self, now: float, dt: float) -> None:
        """Write the actuator controls for the next control period."""
        world, data = self.world, self.world.data
        for name, group in self.groups.items():
            state = self._state[name]
            actuators = world.actuators[name]
            age = now - state.stamp
            fresh = self.effort_timeout_s if group.mode == "effort" else self.command_timeout_s
            if age <= fresh:
                data.ctrl[actuators] = state.command
                continue
            if age <= self.command_timeout_s:  # an effort group between a missed torque and the brakes
                qd = data.qvel[world.group_dof[name]]
                tau = data.qfrc_bias[world.group_dof[name]] - group.kd * qd
                data.ctrl[actuators] = np.clip(tau, -group.effort_limit, group.effort_limit)
                continue
            q = data.qpos[world.group_qpos[name]]
            if state.hold is None:
                state.hold = q.copy() if group.mode != "position" or state.command is None else state.command
            if group.mode == "effort":
                qd = data.qvel[world.group_dof[name]]
                bias = data.qfrc_bias[world.group_dof[name]]
                tau = group.kp * position_error(group, state.hold, q) - group.kd * qd + bias
                data.ctrl[actuators] = np.clip(tau, -group.effort_limit, group.effort_limit)
            elif group.mode == "position":
                data.ctrl[actuators] = state.hold
            else:
                data.ctrl[actuators] = 0.0
        if self.base is not None:
            self._apply_base(now, dt)

    def _apply_base(self, now: float, dt: float) -> None:
        target = self._base_target if now - self._base_stamp <= self.base_timeout_s else np.zeros(3)
        limits = dict(zip(self.base.channels, self.base.max_acceleration))
        step = np.array([limits.get(c, np.inf) for c in ("vx", "vy", "wz")]) * dt
        self._base_velocity += np.clip(target - self._base_velocity, -step, step)
        vx, vy, wz = self._base_velocity
        yaw = self.world.data.qpos[self.world.base_qpos[2]]
        c, s = np.cos(yaw), np.sin(yaw)
        self.world.data.ctrl[self.world.base_actuators] = [c * vx - s * vy, s * vx + c * vy, wz]
