"""The controller core: chunks in, one command per group out, every control period. No ROS.

Each step: targets from the chunk timeline -> the motion limiter (URDF limits, rate limits) ->
for a humanoid, the upper-body blend weight -> the control law per group (control/pd.py: torques
from the dynamics model in effort mode; positions or velocities for hardware that closes its own
loop). A mobile base's velocity chunks become one planar velocity command every base period
(control/base.py).

Watchdog, in order of precedence:
- e-stop (latched until reset): targets freeze where the commanded state is, the limiter brings
  it to rest within the acceleration limits, the base brakes, chunks are refused.
- stale joint_states (none for `state_timeout_s`): no feedback, so no new motion. Position
  groups hold the last commanded position (their hardware closes the loop), velocity groups get
  zero, effort groups get no command at all: a torque without feedback cannot hold an arm (a
  frozen or model-only torque lets it swing), so the hardware's own command watchdog takes over
  with its brakes, as a torque-controlled robot does on a lost link. When states return, control
  restarts from the measured pose with old chunks forgotten. The base brakes to a stop.
- following error: a measured joint (of an arm, torso or head) further than `following_error_rad`
  from what was commanded means the robot is not where the chunk assumes: it hit something, a
  joint slips, or a simulator teleported it to a new episode. Pulling it back would fight the
  obstacle or swing it across the workspace, so the chunk is dropped and the controller restarts
  from the measured pose, holding it (counted and reported). Grippers and hands are left out:
  squeezing an object holds them away from their command on purpose.
- chunks run out: the targets hold at the last point (the arm comes to rest, held there).

Interventions: while a person drives (`set_intervention(True)`), the controller tracks teleop
chunks (`submit(..., teleop=True)`) and refuses the policy's; outside one it refuses teleop
chunks. At both handovers the targets come to rest from where they are (velocity-continuous,
within the acceleration limits) and hold until the side now in charge sends a chunk, which
splices on as any chunk does. After the hand-back, policy chunks computed from observations
taken before it are refused: the policy resumes from the pose the person left. The watchdog
rules above hold throughout.

Every chunk that is refused, by the message conversion or here, is counted in `stats`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from vla_ros.control.base import BaseTracker
from vla_ros.control.chunk import BaseChunk, ChunkRejected, JointChunk
from vla_ros.control.limits import MotionLimiter
from vla_ros.control.pd import CommandLaw, wrap_to_pi
from vla_ros.control.timeline import STRATEGIES, Timeline
from vla_ros.embodiment import Embodiment
from vla_ros.embodiment.config import END_EFFECTOR_KINDS
from vla_ros.params import Params, param

FUTURE_TOLERANCE_S = 0.05  # [s] a stamp this far ahead of the controller's clock is still taken (clock skew)
BASE_PERIOD_S = 0.02  # [s] between base velocity commands (50 Hz)
BASE_COOL_DOWN_S = 1.0  # [s] after its chunk timed out, zero velocities keep going to the base this long
WAITING, RUNNING, HOLDING, STALE, ESTOP = "waiting_for_state", "tracking", "holding", "state_stale", "estop"


@dataclass(frozen=True)
class ControllerConfig(Params):
    """How the controller tracks chunks: controller_node's parameters of the core."""

    strategy: str = param("splice", "how a new chunk joins the running one", choices=STRATEGIES, dynamic=True)
    blend_s: float = param(0.1, "splice: the old plan blends into the new one over this long [s]", low=0.0, high=2.0)
    ensemble_decay: float = param(0.5, "ensemble: chunk weight exp(-decay * rank), the oldest chunk rank 0",
                                  low=0.0, high=10.0)
    margin_scale: float = param(1.0, "times each group's soft_margin kept inside the URDF position limits",
                                low=0.0, high=10.0)
    max_chunk_age_s: float = param(1.0, "chunks computed from older observations are rejected [s]", low=0.0, high=60.0)
    state_timeout_s: float = param(0.1, "joint_states older than this stop all motion [s]", low=0.001, high=10.0)
    base_timeout_s: float = param(0.3, "a mobile base stops this long after its last chunk arrived [s]",
                                  low=0.01, high=10.0)
    gravity_compensation: bool = param(True, "effort groups: add the bias torques b(q, qd) of the URDF model "
                                       "(g(q) for the pd law)")
    upper_body_ramp_s: float = param(1.0, "embodiments with delegated groups: the upper body blends in from its pose "
                                     "at start, and out again on e-stop and on stopping, over this long [s]",
                                     low=0.0, high=10.0)
    following_error_rad: float = param(0.2, "an arm, torso or head joint measured further than this from its command: "
                                       "the chunk is dropped and the controller holds where the joints are [rad or m]",
                                       low=0.01, high=10.0)


@dataclass
class Output:
    """One step's result: a command per commanded group (None: publish nothing for it)."""

    commands: dict[str, np.ndarray | None]
    state: str
    q_command: np.ndarray  # (n,) commanded positions after limits (and blend weight)
    qd_command: np.ndarray  # (n,)
    base: np.ndarray | None = None  # (3,) vx, vy, wz for the base this period, or None: send nothing


@dataclass
class Stats:
    """What happened to the chunks and the watchdog so far (read by diagnostics)."""

    chunks_accepted: int = 0
    chunks_rejected: int = 0
    last_rejection: str = ""
    newest_stamp: float = -math.inf
    last_boundary_jump: float = 0.0  # [rad/s] max |qd*| change at the last accepted chunk's arrival
    following_faults: int = 0  # restarts because a joint was too far from its command
    last_following_fault: str = ""
    interventions: int = 0  # takeovers by a person so far
    teleop_chunks: int = 0  # teleop chunks accepted

    def rejected(self, rejection: ChunkRejected, what: str = "") -> None:
        """Count a refused chunk (`what` names its kind: "base")."""
        self.chunks_rejected += 1
        self.last_rejection = f"{what}: {rejection.reason}" if what else rejection.reason


class Controller:
    """Tracks chunks for the commanded (non-delegated) groups of an embodiment."""

    def __init__(self, embodiment: Embodiment, config: ControllerConfig = ControllerConfig()):
        self.embodiment = embodiment
        self.config = config
        self.groups = embodiment.commanded_groups
        self.joints = [j for g in self.groups for j in g.joints]
        self.index = {name: i for i, name in enumerate(self.joints)}
        self.delegated = {j for g in embodiment.delegated_groups for j in g.joints}
        stack = lambda attribute: np.concatenate([getattr(g, attribute) for g in self.groups])  # noqa: E731
        self.limiter = MotionLimiter(
            stack("lower"), stack("upper"), stack("velocity_limit"), stack("accel_limit"),
            np.concatenate([np.full(len(g.joints), g.soft_margin * config.margin_scale) for g in self.groups]),
            stack("continuous"),
        )
        self.law = CommandLaw(embodiment, self.groups, config.gravity_compensation)
        self.kinematics_index = self.law.index
        self.continuous = stack("continuous").astype(bool)
        self.watched = np.concatenate([np.full(len(g.joints), g.kind not in END_EFFECTOR_KINDS) for g in self.groups])
        self._commanded: np.ndarray | None = None  # (n,) the last step's q_command
        self.timeline = Timeline(len(self.joints), config.strategy, config.blend_s, config.ensemble_decay)
        self.ramp = config.upper_body_ramp_s if embodiment.delegated_groups else 0.0
        self.base = BaseTracker(embodiment.base, config.base_timeout_s) if embodiment.base else None
        self._base_due = -math.inf  # [s] when the next base command is due
        self.stats = Stats()
        self.estopped = False
        self.estop_reason = ""
        self._state: tuple[np.ndarray, np.ndarray, float] | None = None  # (q_full, qd_full, received)
        self._active = False  # controlling from a fresh state since the last (re)start
        self._weight, self._anchor = 1.0, None
        self._ramp_from, self._ramp_rising, self._ramp_start = 1.0, True, 0.0
        self.intervening = False  # a person drives: teleop chunks, not the policy's
        self._handed_back = -math.inf  # [s] when the last intervention ended
        self.state = WAITING

    # -- inputs -----------------------------------------------------------------------------
    def update_state(self, q_full: np.ndarray, qd_full: np.ndarray, received: float) -> None:
        """A joint state, in Kinematics.joint_names order, received at `received` [s]."""
        self._state = (np.asarray(q_full, dtype=float), np.asarray(qd_full, dtype=float), received)

    def _fresh(self, now: float) -> bool:
        """Whether a joint state came within state_timeout_s of `now`."""
        return self._state is not None and now - self._state[2] <= self.config.state_timeout_s

    def submit(self, chunk: JointChunk, now: float, teleop: bool = False) -> JointChunk:
        """Take a joint chunk at `now` [s]: its points still ahead. `teleop`: it comes from a person.

        ChunkRejected, counted, when it does not fit this robot or this moment; then nothing changes.
        """
        try:
            if self.estopped:
                raise ChunkRejected(f"e-stop is latched ({self.estop_reason}); call reset")
            if not self._active and not self._fresh(now):
                raise ChunkRejected("no fresh joint_states yet: nothing to start from")
            if teleop and not self.intervening:
                raise ChunkRejected("teleop chunk outside an intervention (vla/intervention is false)")
            if not teleop and self.intervening:
                raise ChunkRejected("a person is driving (vla/intervention): policy chunks are set aside")
            if not teleop and chunk.stamp < self._handed_back:
                raise ChunkRejected(f"computed from an observation {self._handed_back - chunk.stamp:.3f} s before "
                                    "the person handed back")
            for name in chunk.joints:
                if name in self.delegated:
                    raise ChunkRejected(f"joint {name!r} is delegated to the vendor stack and never commanded")
                if name not in self.index:
                    raise ChunkRejected(f"unknown joint {name!r} (commanded joints: {', '.join(self.index)})")
            self._check_age(chunk.stamp, now)
            chunk = chunk.after(now)
        except ChunkRejected as rejection:
            self.stats.rejected(rejection)
            raise
        if not self._active:  # (re)started since the last period: from the newest state, so the chunk counts
            self._start(self._state[0][self.kinematics_index], now)
        _, before = self.timeline.sample(now)
        self.timeline.add(chunk, np.array([self.index[j] for j in chunk.joints]), now)
        _, after = self.timeline.sample(now)
        self.stats.last_boundary_jump = float(np.max(np.abs(after - before)))
        self.stats.chunks_accepted += 1
        self.stats.teleop_chunks += teleop
        self.stats.newest_stamp = max(self.stats.newest_stamp, chunk.stamp)
        return chunk

    def set_intervention(self, active: bool, now: float) -> None:
        """A person takes over (True) or hands back (False) at `now` [s]; a repeat changes nothing.

        The targets come to rest from where they are and hold until a chunk of the side in charge.
        """
        if active == self.intervening:
            return
        self.intervening = active
        if active:
            self.stats.interventions += 1
        else:
            self._handed_back = now
        if self._active and not self.estopped:
            self.timeline.stop(now, self.limiter.acceleration)
        if active and self.base is not None:
            self.base.forget()  # the base brakes: teleoperation drives the arms only

    def submit_base(self, chunk: BaseChunk, now: float) -> None:
        """Take a base chunk at `now` [s] (ChunkRejected, counted, when it does not fit)."""
        try:
            if self.base is None:
                raise ChunkRejected(f"{self.embodiment.name} has no mobile base")
            if self.estopped:
                raise ChunkRejected(f"e-stop is latched ({self.estop_reason}); call reset")
            if self.intervening:
                raise ChunkRejected("a person is driving (vla/intervention): policy chunks are set aside")
            self._check_age(chunk.stamp, now)
            self.base.submit(chunk, now)
        except ChunkRejected as rejection:
            self.stats.rejected(rejection, "base")
            raise

    def _check_age(self, stamp: float, now: float) -> None:
        age = now - stamp
        if age > self.config.max_chunk_age_s:
            raise ChunkRejected(f"observation is {age:.3f} s old (limit {self.config.max_chunk_age_s:.3f} s)")
        if age < -FUTURE_TOLERANCE_S:
            raise ChunkRejected(f"stamp is {-age:.3f} s in the future (are the clocks the same?)")

    def set_strategy(self, strategy: str) -> None:
        """Switch strategy; the current targets are kept and held until the next chunk."""
        self.config = dataclasses.replace(self.config, strategy=strategy)
        held = self.timeline.last_target
        self.timeline = Timeline(len(self.joints), strategy, self.config.blend_s, self.config.ensemble_decay)
        if held is not None:
            self.timeline.reset(held)

    def estop(self, reason: str) -> None:
        """Latch the e-stop: decelerate within limits to rest and hold; refuse chunks."""
        if not self.estopped:
            self.estopped, self.estop_reason = True, reason
            if self._active:
                self.timeline.reset(self.limiter.q)
            if self.base is not None:
                self.base.forget()

    def reset(self) -> None:
        """Release the e-stop and restart from the next measured state."""
        self.estopped, self.estop_reason = False, ""
        self._active = False

    # -- the control period -----------------------------------------------------------------
    def step(self, now: float, dt: float) -> Output:
        """Commands for the period starting at `now` [s] (dt [s] is the period)."""
        out = self._joint_step(now, dt)
        out.base = self._base_step(now)
        return out

    def _base_step(self, now: float) -> np.ndarray | None:
        """The base command when one is due and the base is, or was lately, asked to move; else None.

        One is due every BASE_PERIOD_S. Without fresh states or on e-stop the base brakes to zero.
        """
        if self.base is None or now < self._base_due:
            return None
        self._base_due = max(self._base_due + BASE_PERIOD_S, now)
        stop = self.state in (WAITING, STALE, ESTOP)
        command = self.base.step(now, BASE_PERIOD_S, stop=stop)
        if np.any(command != 0) or np.any(self.base.target(now) != 0) or \
                now - self.base.arrived < self.base.timeout_s + BASE_COOL_DOWN_S:
            return command
        return None

    def _joint_step(self, now: float, dt: float) -> Output:
        if self._state is None:
            self.state = WAITING
            return self._silence()
        q_full, qd_full, received = self._state
        q = q_full[self.kinematics_index]
        if not self._fresh(now):
            self._active = False
            self.state = STALE
            return self._stale_output()
        if not self._active:
            self._start(q, now)
        elif not self.estopped and (fault := self._following_fault(q)):
            self.stats.following_faults += 1
            self.stats.last_following_fault = fault
            self._start(q, now)
        targets, target_velocities = self.timeline.sample(now)
        if self.estopped:
            self.state = ESTOP
        else:
            self.state = HOLDING if self.timeline.exhausted(now) else RUNNING
        q_cmd, qd_cmd = self.limiter.step(targets, target_velocities, dt)
        q_cmd, qd_cmd = self._blend(q_cmd, qd_cmd, now)
        self._commanded = q_cmd
        commands = self.law.commands(q_full, qd_full, q_cmd, qd_cmd)
        return Output(commands, self.state, q_cmd, qd_cmd)

    def _following_fault(self, q: np.ndarray) -> str | None:
        """What is wrong when a watched joint is further than following_error_rad from its command."""
        error = q - self._commanded
        error[self.continuous] = wrap_to_pi(error[self.continuous])
        error = np.where(self.watched, np.abs(error), 0.0)
        worst = int(np.argmax(error))
        if error[worst] <= self.config.following_error_rad:
            return None
        return (f"{self.joints[worst]} measured {error[worst]:.3f} from its command (following_error_rad "
                f"{self.config.following_error_rad}): chunk dropped, holding where the joints are")

    def _start(self, q: np.ndarray, now: float) -> None:
        """(Re)start from the measured pose at rest, holding it."""
        self.limiter.reset(q)
        self.timeline.reset(self.limiter.q)
        self._commanded = self.limiter.q.copy()
        self._active = True
        self._anchor = self.limiter.q.copy()
        self._weight = self._ramp_from = 0.0 if self.ramp > 0 else 1.0
        self._ramp_rising, self._ramp_start = True, now

    def _blend(self, q_cmd: np.ndarray, qd_cmd: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Humanoids: commands leave (and, on e-stop, return to) the anchor pose over a ramp.

        So the vendor's balance controller never sees a step. Others pass through.
        """
        if self.ramp <= 0:
            return q_cmd, qd_cmd
        rising = not self.estopped
        if rising != self._ramp_rising:  # the e-stop latched: ramp down towards the pose now
            if self._weight >= 1.0:
                self._anchor = q_cmd.copy()  # where the output is; with a lower weight keep the anchor
            self._ramp_from, self._ramp_rising, self._ramp_start = self._weight, rising, now
        progress = min(1.0, (now - self._ramp_start) / self.ramp)
        smooth = progress * progress * (3 - 2 * progress)
        self._weight = self._ramp_from + ((1.0 if rising else 0.0) - self._ramp_from) * smooth
        return self._anchor + self._weight * (q_cmd - self._anchor), self._weight * qd_cmd

    @property
    def weight(self) -> float:
        """The upper-body blend weight (1 for embodiments without delegated groups)."""
        return self._weight

    def _stale_output(self) -> Output:
        commands = {}
        for group in self.groups:
            part = self.law.slices[group.name]
            if group.mode == "effort":
                commands[group.name] = None
            elif group.mode == "position":
                commands[group.name] = self.limiter.q[part].copy()
            else:
                commands[group.name] = np.zeros(len(group.joints))
        return Output(commands, STALE, self.limiter.q.copy(), np.zeros(len(self.joints)))

    def _silence(self) -> Output:
        return Output({g.name: None for g in self.groups}, self.state, self.limiter.q.copy(),
                      np.zeros(len(self.joints)))
