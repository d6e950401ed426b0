"""`controller_node`: tracks action chunks with its control law (control/pd.py) at a steady rate, safely.

Subscribes joint_states, vla/action_chunk, vla/base_chunk, vla/estop, and for teleoperation
vla/intervention (std_msgs/Bool, true while a person drives) and vla/teleop_chunk (tracked instead
of the policy's chunks during an intervention); publishes one
std_msgs/Float64MultiArray per commanded group on its `<group>_controller/commands` topic (the
ros2_control forward_command_controller convention), cmd_vel for a mobile base and `~/commanded`
(sensor_msgs/JointState: the limited targets q, qd it tracks). Services: `~/estop`
(std_srvs/SetBool: true latches, false releases like ~/reset) and `~/reset`.

The control loop runs on a thread of its own, paced by absolute deadlines on the monotonic clock,
and owns the controller core (vla_ros/control/controller.py: the watchdog rules). It takes the
newest joint_states straight from its subscription at the top of each period (no executor in the
hot path); the other callbacks only decode and queue what they received for the loop to take at
its next period, so a slow callback never delays a command. With use_sim_time its time is the
sim's: the stamp of the newest joint_states it took (the sim's clock when it measured them), or
/clock when that is later (states that stopped coming still go stale), and a period in which sim
time did not move is skipped (a paused sim, or none yet). /clock alone reaches the node through
its executor, late and in bursts under load; the pace stays the monotonic clock's. With `lockstep`
(beside a sim in lockstep) the loop takes the policy's chunks from their subscriptions itself, at
the top of the period, so a chunk published before the sim stepped is tracked from that step,
and runs a period for each new joint_states only, at its stamp (/clock, arriving before the state
it goes with, would otherwise start a period the sim counts as its command).
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Twist
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.control.chunk import ChunkRejected
from vla_ros.control.controller import ESTOP, HOLDING, RUNNING, STALE, WAITING, Controller, ControllerConfig
from vla_ros.control.rate import PreciseRate, set_realtime_priority, set_timer_slack
from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import ERROR, OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_all, take_latest
from vla_ros.ros.qos import RELIABLE
from vla_ros.ros.time import to_seconds, to_stamp
from vla_ros.ros.trajectory import from_base_chunk_msg, from_chunk_msg
from vla_ros.stats import Window

LEVELS = {RUNNING: OK, HOLDING: OK, WAITING: WARN, STALE: ERROR, ESTOP: ERROR}
CHUNK_WINDOW = 256  # accepted chunks in the age and seam percentiles


@dataclass(frozen=True)
class ControllerParams(ControllerConfig, RobotParams):
    """controller_node's parameters: the controller core's, plus the loop's."""

    rate_hz: float = param(0.0, "control loop rate [Hz]; 0: the embodiment's control_rate_hz", low=0.0, high=2000.0)
    realtime_priority: int = param(50, "SCHED_FIFO priority of the loop thread (0: normal scheduling)", low=0, high=98)
    lockstep: bool = param(False, "take vla/action_chunk and vla/base_chunk in the loop, in order with joint_states, "
                           "for a sim_node in lockstep (evaluation)")


class ControllerNode(VlaNode):
    """The real-time controller (see the module docstring)."""

    params_type = ControllerParams
    realtime = True

    def __init__(self):
        super().__init__("controller_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.rate_hz = self.params.rate_hz or float(self.embodiment.control_rate_hz)
        self.controller = Controller(self.embodiment, self.params)
        self.reader = JointStateReader(self.embodiment.kinematics.joint_names)
        self.use_sim_time = self.get_parameter("use_sim_time").value

        # What callbacks (executor thread) hand to the loop thread: (method of the core, argument).
        self.inbox: collections.deque = collections.deque()
        self.bad_states = 0
        self.last_bad_state = ""

        self.command_pubs = {g.name: self.create_publisher(Float64MultiArray, g.command_topic, RELIABLE)
                             for g in self.controller.groups}
        base = self.embodiment.base
        self.cmd_vel = self.create_publisher(Twist, base.command_topic, RELIABLE) if base else None
        self.commanded_pub = self.create_publisher(JointState, "~/commanded", RELIABLE)
        self.states = polled_subscription(self, JointState, "joint_states")
        chunks = {JointTrajectory: ("vla/action_chunk", self._on_chunk),
                  MultiDOFJointTrajectory: ("vla/base_chunk", self._on_base_chunk)}
        self.polled_chunks = [(polled_subscription(self, kind, topic, RELIABLE), handle)
                              for kind, (topic, handle) in chunks.items()] if self.params.lockstep else []
        if not self.params.lockstep:
            for kind, (topic, handle) in chunks.items():
                self.create_subscription(kind, topic, handle, RELIABLE)
        self.create_subscription(Bool, "vla/estop", self._on_estop_topic, RELIABLE)
        self.create_subscription(JointTrajectory, "vla/teleop_chunk", self._on_teleop_chunk, RELIABLE)
        self.create_subscription(Bool, "vla/intervention", self._on_intervention, RELIABLE)
        self.create_service(SetBool, "~/estop", self._on_estop_service)
        self.create_service(Trigger, "~/reset", self._on_reset_service)

        # Loop statistics (written by the loop thread, read by the diagnostics timer).
        window = int(self.rate_hz * max(self.params.diagnostics_period_s, 1.0))
        self.period_error = Window(window)  # [s] wake-up lateness against the deadline
        self.periods = Window(window)  # [s] time between successive loop starts
        self.latency = Window(window)  # [s] joint_states stamp -> first command computed from it
        self.tracking = Window(window)  # [rad^2] mean squared q_cmd - q per period
        self.chunk_ages = Window(CHUNK_WINDOW)  # [s] observation age of each accepted chunk at arrival
        self.boundary_jumps = Window(CHUNK_WINDOW)  # [rad/s] max |qd*| change at each accepted chunk's arrival
        self.overruns_reported = 0
        self.rate = PreciseRate(self.rate_hz)
        self.start_loop(self._loop, "control_loop")
        mode = "use_sim_time (/clock)" if self.use_sim_time else "monotonic clock"
        delegated = ", ".join(g.name for g in self.embodiment.delegated_groups)
        self.get_logger().info(
            f"{self.embodiment.name}: {len(self.controller.joints)} joints in "
            f"{', '.join(g.name for g in self.controller.groups)} at {self.rate_hz:g} Hz on the {mode}, "
            f"strategy {self.params.strategy}" + (f"; never commands {delegated}" if delegated else ""))

    # -- callbacks (executor thread): decode, queue, return -----------------------------------
    def _on_chunk(self, msg: JointTrajectory) -> None:
        try:
            self.inbox.append((self._take_chunk, from_chunk_msg(msg)))
        except ChunkRejected as rejection:
            self.inbox.append((self._refuse, (rejection, "")))

    def _on_teleop_chunk(self, msg: JointTrajectory) -> None:
        try:
            self.inbox.append((self._take_teleop_chunk, from_chunk_msg(msg)))
        except ChunkRejected as rejection:
            self.inbox.append((self._refuse, (rejection, "teleop")))

    def _on_intervention(self, msg: Bool) -> None:
        self.inbox.append((self._set_intervention, bool(msg.data)))

    def _on_base_chunk(self, msg: MultiDOFJointTrajectory) -> None:
        try:
            self.inbox.append((self._take_base_chunk, from_base_chunk_msg(msg)))
        except ChunkRejected as rejection:
            self.inbox.append((self._refuse, (rejection, "base")))

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.inbox.append((self._estop, "vla/estop topic"))

    def _on_estop_service(self, request, response):
        self.inbox.append((self._estop, "~/estop service") if request.data else (self._reset, None))
        response.success = True
        response.message = ("e-stop latched" if request.data
                            else "e-stop released; control restarts from the next joint_states")
        return response

    def _on_reset_service(self, request, response):
        self.inbox.append((self._reset, None))
        response.success, response.message = True, "reset: control restarts from the next joint_states"
        return response

    def on_params(self, old: ControllerParams, new: ControllerParams) -> None:
        if new.strategy != old.strategy:
            self.inbox.append((self._set_strategy, new.strategy))

    # -- the control loop (its own thread) ---------------------------------------------------
    def _loop(self) -> None:
        set_timer_slack()
        refused = set_realtime_priority(self.params.realtime_priority) if self.params.realtime_priority > 0 else None
        if refused:
            self.get_logger().warning(refused)
        period = self.rate.period_s
        state = None  # (q, qd, stamp [s]) of the newest good joint_states
        used_stamp = None
        last_start = None
        last_now = -np.inf
        while not self.stopping.is_set():
            late = self.rate.sleep()
            msg = take_latest(self.states)
            now = self.now()
            if self.params.lockstep:  # a period per state, at its stamp: the sim waits for this command
                if msg is None:
                    continue
                now = to_seconds(msg.header.stamp)
            elif self.use_sim_time:
                if msg is not None:  # the sim's time when it measured the state: fresher than /clock
                    now = max(now, to_seconds(msg.header.stamp))
                if now <= last_now:  # sim time stands still: nothing moved, nothing to command
                    continue
            last_now = now
            start = time.monotonic()
            if last_start is not None:
                self.periods.add(start - last_start)
            last_start = start
            self.period_error.add(late)
            for subscription, handle in self.polled_chunks:
                for chunk in take_all(subscription):
                    handle(chunk)
            while self.inbox:
                take, payload = self.inbox.popleft()
                take(payload, now)
            if msg is not None:
                try:
                    q, qd = self.reader.read(msg)
                    state = (q, qd, to_seconds(msg.header.stamp))
                    self.controller.update_state(q, qd, now)
                except JointStateError as error:
                    self.bad_states += 1
                    self.last_bad_state = str(error)
                    self.get_logger().error(f"ignoring joint_states: {error}", throttle_duration_sec=2.0)
            faults = self.controller.stats.following_faults
            out = self.controller.step(now, period)
            if self.controller.stats.following_faults > faults:
                self.get_logger().warning(self.controller.stats.last_following_fault, throttle_duration_sec=2.0)
            for name, command in out.commands.items():
                if command is not None:
                    self.command_pubs[name].publish(Float64MultiArray(data=command.tolist()))
            if out.base is not None:
                twist = Twist()
                twist.linear.x, twist.linear.y, twist.angular.z = (float(v) for v in out.base)
                self.cmd_vel.publish(twist)
            if out.state not in (WAITING, STALE):
                self.commanded_pub.publish(JointState(
                    header=Header(stamp=to_stamp(now)), name=self.controller.joints,
                    position=out.q_command.tolist(), velocity=out.qd_command.tolist()))
                q_measured = state[0][self.controller.kinematics_index]
                self.tracking.add(float(np.mean((out.q_command - q_measured) ** 2)))
                if state[2] != used_stamp and not self.use_sim_time:
                    self.latency.add(self.now() - state[2])
                    used_stamp = state[2]

    # What the loop does with each queued input, at `now` [s] (its clock).
    def _take_chunk(self, chunk, now: float, teleop: bool = False) -> None:
        try:
            chunk = self.controller.submit(chunk, now, teleop)
        except ChunkRejected as rejection:
            self.get_logger().warning(f"{'teleop ' if teleop else ''}chunk rejected: {rejection.reason}",
                                      throttle_duration_sec=1.0)
            return
        self.chunk_ages.add(now - chunk.stamp)
        self.boundary_jumps.add(self.controller.stats.last_boundary_jump)

    def _take_teleop_chunk(self, chunk, now: float) -> None:
        self._take_chunk(chunk, now, teleop=True)

    def _set_intervention(self, active: bool, now: float) -> None:
        if active != self.controller.intervening:
            self.get_logger().info("a person takes over: tracking vla/teleop_chunk" if active
                                   else "the person hands back: tracking vla/action_chunk")
        self.controller.set_intervention(active, now)

    def _take_base_chunk(self, chunk, now: float) -> None:
        try:
            self.controller.submit_base(chunk, now)
        except ChunkRejected as rejection:
            self.get_logger().warning(f"base chunk rejected: {rejection.reason}", throttle_duration_sec=1.0)

    def _refuse(self, refused: tuple[ChunkRejected, str], now: float) -> None:
        rejection, what = refused
        self.controller.stats.rejected(rejection, what)
        self.get_logger().warning(f"{what + ' ' if what else ''}chunk rejected: {rejection.reason}",
                                  throttle_duration_sec=1.0)

    def _estop(self, reason: str, now: float) -> None:
        self.controller.estop(reason)
        self.get_logger().error(f"e-stop latched by {reason}: braking to rest and holding; call ~/reset to release")

    def _reset(self, _, now: float) -> None:
        self.controller.reset()
        self.get_logger().info("reset: restarting from the next joint_states")

    def _set_strategy(self, strategy: str, now: float) -> None:
        self.controller.set_strategy(strategy)
        self.get_logger().info(f"strategy: {strategy}")

    # -- reporting (executor thread) ---------------------------------------------------------
    def report(self) -> Report:
        controller, stats = self.controller, self.controller.stats
        state = controller.state
        message = {
            WAITING: "waiting for joint_states",
            STALE: f"joint_states stale (none for > {controller.config.state_timeout_s:g} s): holding without motion",
            ESTOP: f"e-stop latched ({controller.estop_reason}): holding; call ~/reset",
            RUNNING: "tracking chunks",
            HOLDING: "no chunk covers now: holding the last target",
        }[state]
        if controller.intervening and state in (RUNNING, HOLDING):
            message = f"a person is driving (vla/intervention): {message}"

        if self.bad_states and state in (WAITING, STALE):
            message += f"; last bad joint_states: {self.last_bad_state}"
        periods = self.periods.samples()
        values = {
            "state": state, "strategy": controller.config.strategy,
            "rate_hz_target": f"{self.rate_hz:g}",
            "rate_hz_achieved": f"{1.0 / np.mean(periods):.2f}" if len(periods) else "nan",
            "period_error_p50_us": f"{self.period_error.percentile(50) * 1e6:.1f}",
            "period_error_p99_us": f"{self.period_error.percentile(99) * 1e6:.1f}",
            "period_error_max_us": f"{self.period_error.percentile(100) * 1e6:.1f}",
            "state_to_command_p50_ms": f"{self.latency.percentile(50) * 1e3:.3f}",
            "state_to_command_p99_ms": f"{self.latency.percentile(99) * 1e3:.3f}",
            "tracking_error_rms_rad":
                f"{np.sqrt(np.mean(self.tracking.samples())):.5f}" if self.tracking.count else "nan",
            "chunk_age_s": f"{self.now() - stats.newest_stamp:.3f}" if np.isfinite(stats.newest_stamp) else "none yet",
            "chunk_age_at_arrival_p50_s": f"{self.chunk_ages.percentile(50):.3f}",
            "chunks_accepted": stats.chunks_accepted, "chunks_rejected": stats.chunks_rejected,
            "last_rejection": stats.last_rejection,
            "following_faults": stats.following_faults, "last_following_fault": stats.last_following_fault,
            "boundary_velocity_jump_max": f"{self.boundary_jumps.percentile(100):.4f}",
            "intervening": str(controller.intervening).lower(), "interventions": stats.interventions,
            "teleop_chunks": stats.teleop_chunks,
            "bad_joint_states": self.bad_states, "overruns": self.rate.overruns,
        }
        if self.embodiment.delegated_groups:
            values["upper_body_weight"] = f"{controller.weight:.3f}"
        level = LEVELS[state]
        if level == OK and (self.rate.overruns > self.overruns_reported):
            level, message = WARN, f"{message}; loop overran {self.rate.overruns} times"
        self.overruns_reported = self.rate.overruns
        for window in (self.periods, self.period_error, self.latency, self.tracking, self.boundary_jumps):
            window.clear()
        return Report(level, message, values)

    def close(self) -> None:
        """Stop the loop; a humanoid's upper body first ramps back to its anchor pose."""
        if self.controller.ramp > 0 and self.controller.state not in (WAITING, STALE) and self.context.ok():
            self.inbox.append((self._estop, "controller_node stopping"))
            time.sleep(self.controller.ramp + 0.05)
        super().close()


def main(args=None):
    run(ControllerNode, args)


if __name__ == "__main__":
    main()
