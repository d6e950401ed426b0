"""`controller_node`: tracks action chunks with its control law (control/pd.py) at a steady rate, safely.

Subscribes joint_states, vla/action_chunk, vla/base_chunk and vla/estop; publishes one
std_msgs/Float64MultiArray per commanded group on its `<group>_controller/commands` topic (the
ros2_control forward_command_controller convention), cmd_vel for a mobile base, `~/commanded`
(sensor_msgs/JointState: the limited targets q, qd it tracks) and diagnostics. Services:
`~/estop` (std_srvs/SetBool: true latches, false releases like ~/reset) and `~/reset`.

The control loop runs on a thread of its own, paced by absolute deadlines on the monotonic clock,
and owns the controller core. With use_sim_time its time is the sim's: the stamp of the newest
joint_states it took (the sim's clock when it measured them), or /clock when that is later (states
that stopped coming still go stale), and a period in which sim time did not move is skipped (a
paused sim, or none yet). /clock alone reaches the node through its executor, late and in bursts
under load, and comes at the sim's `clock_rate_hz`; the pace stays the monotonic clock's. It
takes the newest joint_states straight from its subscription at the top of each period (no
executor in the hot path); the other callbacks only queue what they received for the loop to take
at its next period, so a slow callback never delays a command. See vla_ros/control/controller.py for the watchdog rules.
"""
from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.control.base import BaseTracker
from vla_ros.control.chunk import ChunkRejected
from vla_ros.control.controller import ESTOP, RUNNING, STALE, WAITING, Controller, ControllerConfig
from vla_ros.control.rate import PreciseRate, Window, set_realtime_priority, set_timer_slack
from vla_ros.control.timeline import STRATEGIES
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.nodes.common import declare, run
from vla_ros.ros.diagnostics import ERROR, OK, WARN, diagnostic_array
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_latest
from vla_ros.ros.time import to_seconds, to_stamp
from vla_ros.ros.trajectory import from_base_chunk_msg, from_chunk_msg

# Hand the GIL over every 50 us (Python's default is 5 ms) so the loop thread, waking at its
# deadline, gets it from the executor thread within a fraction of a 1 kHz period.
SWITCH_INTERVAL_S = 0.00005
BASE_RATE_HZ = 50.0
LEVELS = {RUNNING: OK, "holding": OK, WAITING: WARN, STALE: ERROR, ESTOP: ERROR}


class ControllerNode(Node):
    def __init__(self):
        super().__init__("controller_node")
        self.embodiment = load_embodiment(declare(self, "embodiment", "arm7", "embodiment name or file", read_only=True))
        self.rate_hz = declare(self, "rate_hz", float(self.embodiment.control_rate_hz),
                               "control loop rate [Hz] (default: the embodiment's control_rate_hz)",
                               read_only=True, low=1.0, high=2000.0)
        config = ControllerConfig(
            strategy=declare(self, "strategy", "splice", f"how a new chunk joins the running one: {', '.join(STRATEGIES)}"),
            blend_s=declare(self, "blend_s", 0.1, "splice blend window [s]", read_only=True, low=0.0, high=2.0),
            ensemble_decay=declare(self, "ensemble_decay", 0.5, "ensemble: weight exp(-decay * rank), oldest chunk rank 0",
                                   read_only=True, low=0.0, high=10.0),
            margin_scale=declare(self, "margin_scale", 1.0, "times each group's soft_margin kept inside the URDF limits",
                                 read_only=True, low=0.0, high=10.0),
            max_chunk_age_s=declare(self, "max_chunk_age_s", 1.0, "chunks from older observations are rejected [s]",
                                    read_only=True, low=0.0, high=60.0),
            state_timeout_s=declare(self, "state_timeout_s", 0.1, "joint_states older than this stop all motion [s]",
                                    read_only=True, low=0.001, high=10.0),
            gravity_compensation=declare(self, "gravity_compensation", True,
                                         "add g(q) from the URDF to effort commands", read_only=True),
            upper_body_ramp_s=declare(self, "upper_body_ramp_s", 1.0,
                                      "blend-weight ramp on start, stop and e-stop for embodiments with delegated groups [s]",
                                      read_only=True, low=0.0, high=10.0),
            following_error_rad=declare(self, "following_error_rad", 0.2,
                                        "an arm, torso or head joint measured further than this from its command: the "
                                        "chunk is dropped and the controller holds where the joints are [rad | m]",
                                        read_only=True, low=0.01, high=10.0),
        )
        base_timeout = declare(self, "base_timeout_s", 0.3, "the base stops this long after its last chunk arrived [s]",
                               read_only=True, low=0.01, high=10.0)
        self.priority = declare(self, "realtime_priority", 50, "SCHED_FIFO priority of the loop thread (0: normal scheduling)",
                                read_only=True, low=0, high=98)
        self.diagnostics_period = declare(self, "diagnostics_period_s", 1.0, "diagnostics interval [s]",
                                          read_only=True, low=0.05, high=60.0)
        self.add_on_set_parameters_callback(self._on_parameters)
        try:
            self.controller = Controller(self.embodiment, config)
        except VlaRosError as error:
            raise VlaRosError(f"controller_node parameters: {error}") from None
        self.reader = JointStateReader(self.embodiment.kinematics.joint_names)
        base = self.embodiment.base
        self.base = BaseTracker(base, config.max_chunk_age_s, base_timeout) if base else None
        self.use_sim_time = self.get_parameter("use_sim_time").value

        # What callbacks (executor thread) hand to the loop thread.
        self.inbox: collections.deque = collections.deque()  # ("chunk" | "base" | "estop" | "reset" | "strategy", ...)
        self.bad_states = 0
        self.last_bad_state = ""

        self.command_pubs = {g.name: self.create_publisher(Float64MultiArray, g.command_topic, 10)
                             for g in self.controller.groups}
        self.cmd_vel = self.create_publisher(Twist, base.command_topic, 10) if base else None
        self.commanded_pub = self.create_publisher(JointState, "~/commanded", 10)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.states = polled_subscription(self, JointState, "joint_states")
        self.create_subscription(JointTrajectory, "vla/action_chunk", self._on_chunk, 10)
        self.create_subscription(MultiDOFJointTrajectory, "vla/base_chunk", self._on_base_chunk, 10)
        self.create_subscription(Bool, "vla/estop", self._on_estop_topic, 10)
        self.create_service(SetBool, "~/estop", self._on_estop_service)
        self.create_service(Trigger, "~/reset", self._on_reset_service)

        # Loop statistics (written by the loop thread, read by the diagnostics timer).
        window = int(self.rate_hz * max(self.diagnostics_period, 1.0))
        self.period_error = Window(window)  # [s] wake-up lateness against the deadline
        self.periods = Window(window)  # [s] time between successive loop starts
        self.latency = Window(window)  # [s] joint_states stamp -> first command computed from it
        self.tracking = Window(window)  # [rad^2] mean squared q_cmd - q per period
        self.chunk_ages = Window(256)  # [s] observation age of each accepted chunk at arrival
        self.boundary_jumps = Window(256)  # [rad/s] max |qd*| change at each accepted chunk's arrival
        self.ticks = 0
        self.overruns_reported = 0
        self.rate = PreciseRate(self.rate_hz)

        self.running = threading.Event()
        self.running.set()
        self.thread = threading.Thread(target=self._until_shutdown, name="control_loop", daemon=True)
        self.thread.start()
        self.create_timer(self.diagnostics_period, self._publish_diagnostics)
        mode = "use_sim_time (/clock)" if self.use_sim_time else "monotonic clock"
        self.get_logger().info(
            f"{self.embodiment.name}: {len(self.controller.joints)} joints in "
            f"{', '.join(g.name for g in self.controller.groups)} at {self.rate_hz:g} Hz on the {mode}, "
            f"strategy {config.strategy}" + (f"; never commands {', '.join(g.name for g in self.embodiment.delegated_groups)}"
                                             if self.embodiment.delegated_groups else ""))

    # -- callbacks (executor thread): decode, queue, return -----------------------------------
    def _on_chunk(self, msg: JointTrajectory) -> None:
        self.inbox.append(("chunk", from_chunk_msg(msg)))

    def _on_base_chunk(self, msg: MultiDOFJointTrajectory) -> None:
        self.inbox.append(("base", from_base_chunk_msg(msg)))

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.inbox.append(("estop", "vla/estop topic"))

    def _on_estop_service(self, request, response):
        self.inbox.append(("estop", "~/estop service") if request.data else ("reset", None))
        response.success = True
        response.message = "e-stop latched" if request.data else "e-stop released; control restarts from the next joint_states"
        return response

    def _on_reset_service(self, request, response):
        self.inbox.append(("reset", None))
        response.success, response.message = True, "reset: control restarts from the next joint_states"
        return response

    def _on_parameters(self, parameters):
        for parameter in parameters:
            if parameter.name == "strategy":
                if parameter.value not in STRATEGIES:
                    return SetParametersResult(successful=False, reason=f"strategy must be one of {', '.join(STRATEGIES)}")
                self.inbox.append(("strategy", parameter.value))
        return SetParametersResult(successful=True)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- the control loop (its own thread) ---------------------------------------------------
    def _until_shutdown(self) -> None:
        try:
            self._loop()
        except RCLError:
            if self.context.ok():
                raise

    def _loop(self) -> None:
        set_timer_slack()
        refused = set_realtime_priority(self.priority) if self.priority > 0 else None
        if refused:
            self.get_logger().warning(refused)
        period = self.rate.period_s
        base_every = max(1, round(self.rate_hz / BASE_RATE_HZ))
        state = None  # (q, qd, stamp [s]) of the newest good joint_states
        used_stamp = None
        last_start = None
        last_now = -np.inf
        while self.running.is_set():
            late = self.rate.sleep()
            msg = take_latest(self.states)
            now = self._now()
            if self.use_sim_time:
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
            self._take_inbox(now)
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
            if self.base is not None and self.ticks % base_every == 0:
                self._command_base(now, period * base_every, out.state)
            if out.state not in (WAITING, STALE):
                self.commanded_pub.publish(JointState(
                    header=Header(stamp=to_stamp(now)), name=self.controller.joints,
                    position=out.q_command.tolist(), velocity=out.qd_command.tolist()))
                q_measured = state[0][self.controller.kinematics_index]
                self.tracking.add(float(np.mean((out.q_command - q_measured) ** 2)))
                if state[2] != used_stamp and not self.use_sim_time:
                    self.latency.add(self._now() - state[2])
                    used_stamp = state[2]
            self.ticks += 1

    def _take_inbox(self, now: float) -> None:
        while self.inbox:
            kind, payload = self.inbox.popleft()
            try:
                if kind == "chunk":
                    chunk = self.controller.submit(payload.joints, payload.times, payload.positions,
                                                   payload.velocities, payload.stamp, now)
                    self.chunk_ages.add(now - chunk.stamp)
                    self.boundary_jumps.add(self.controller.stats.last_boundary_jump)
                elif kind == "base" and self.base is not None:
                    if self.controller.estopped:
                        raise ChunkRejected("e-stop is latched; call reset")
                    times, velocities, stamp = payload
                    self.base.submit(times, velocities, stamp, now)
                elif kind == "base":
                    raise ChunkRejected(f"{self.embodiment.name} has no mobile base")
                elif kind == "estop":
                    self.controller.estop(payload)
                    if self.base is not None:
                        self.base.forget()
                    self.get_logger().error(f"e-stop latched by {payload}: braking to rest and holding; "
                                            "call ~/reset to release")
                elif kind == "reset":
                    self.controller.reset()
                    self.get_logger().info("reset: restarting from the next joint_states")
                elif kind == "strategy":
                    self.controller.set_strategy(payload)
                    self.get_logger().info(f"strategy: {payload}")
            except ChunkRejected as rejection:
                reason = rejection.reason
                if kind == "base":
                    self.controller.stats.chunks_rejected += 1
                    self.controller.stats.last_rejection = f"base: {reason}"
                self.get_logger().warning(f"{'base ' if kind == 'base' else ''}chunk rejected: {reason}",
                                          throttle_duration_sec=1.0)

    def _command_base(self, now: float, dt: float, state: str) -> None:
        stop = state in (WAITING, STALE, ESTOP)
        command = self.base.step(now, dt, stop=stop)
        if np.any(command != 0) or np.any(self.base.target(now) != 0) or now - self.base.arrived < self.base.timeout_s + 1.0:
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.angular.z = (float(v) for v in command)
            self.cmd_vel.publish(twist)

    # -- reporting (executor thread) ---------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        controller, stats = self.controller, self.controller.stats
        state = controller.state
        now = self._now()
        message = {
            WAITING: "waiting for joint_states",
            STALE: f"joint_states stale (none for > {controller.config.state_timeout_s:g} s): holding without motion",
            ESTOP: f"e-stop latched ({controller.estop_reason}): holding; call ~/reset",
            RUNNING: "tracking chunks",
            "holding": "no chunk covers now: holding the last target",
        }[state]
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
            "tracking_error_rms_rad": f"{np.sqrt(np.mean(self.tracking.samples())):.5f}" if self.tracking.count else "nan",
            "chunk_age_s": f"{now - stats.newest_stamp:.3f}" if np.isfinite(stats.newest_stamp) else "none yet",
            "chunk_age_at_arrival_p50_s": f"{self.chunk_ages.percentile(50):.3f}",
            "chunks_accepted": stats.chunks_accepted, "chunks_rejected": stats.chunks_rejected,
            "last_rejection": stats.last_rejection,
            "following_faults": stats.following_faults, "last_following_fault": stats.last_following_fault,
            "boundary_velocity_jump_max": f"{self.boundary_jumps.percentile(100):.4f}",
            "bad_joint_states": self.bad_states, "overruns": self.rate.overruns,
        }
        if self.embodiment.delegated_groups:
            values["upper_body_weight"] = f"{controller.weight:.3f}"
        level = LEVELS[state]
        if level == OK and (self.rate.overruns > self.overruns_reported):
            level, message = WARN, f"{message}; loop overran {self.rate.overruns} times"
        self.overruns_reported = self.rate.overruns
        self.periods.clear()
        self.period_error.clear()
        self.latency.clear()
        self.tracking.clear()
        self.boundary_jumps.clear()
        self.diagnostics_pub.publish(diagnostic_array(to_stamp(now), "vla_ros/controller_node", level, message, values))

    def close(self) -> None:
        """Stop the loop; a humanoid's upper body first ramps back to its anchor pose."""
        if self.controller.ramp > 0 and self.controller.state not in (WAITING, STALE) and self.context.ok():
            self.inbox.append(("estop", "controller_node stopping"))
            time.sleep(self.controller.ramp + 0.05)
        self.running.clear()
        self.thread.join(timeout=2.0)


def main(args=None):
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    run(ControllerNode, args, graceful_stop=True)


if __name__ == "__main__":
    main()
