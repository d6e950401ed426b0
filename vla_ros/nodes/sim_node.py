"""`sim_node`: the embedded MuJoCo simulator as a ROS 2 robot.

Publishes what a robot does (joint_states, camera/<name>/image_raw, clock, odom for a mobile
base) and takes what a robot takes (<group>_controller/commands, cmd_vel), plus what only a
simulator has: the task (vla/instruction, sim/task_status), the cubes (sim/objects, in the robot's
root frame) and ~/reset (std_srvs/Trigger) with the `task`, `seed`, `phrasing` and `perturb`
parameters.

Physics runs on its own thread, paced to real time times `real_time_factor` (0: as fast as
possible); cameras render in a child process from snapshots of the state. Stamps are the sim
clock: seconds since start plus the wall time at start, or plain sim seconds with use_sim_time
(then /clock drives every node).

A sim that falls behind (its process was not scheduled) catches up by stepping back to back, by at
most `max_catch_up_s` of sim time, and gives the rest of the time up: the world pauses, as
Gazebo's does when its real-time factor drops. Catching up steps under the commands that were
current when it fell behind (a torque fits only the state it was computed from), so a small
`max_catch_up_s` keeps commands fresh at the cost of sim time. With wall-clock stamps the time
given up is a gap in the stamps, so they match the wall clock again (left behind, every frame
would look stale to policy_node from then on); gaps come in whole control periods, so stamps stay
on the period's grid, less than one period behind. Diagnostics report the time given up, the falls
past MAX_LAG_S (WARN), and how old the commands the physics applied were.
Malformed commands are refused with a throttled warning.

With `lockstep` (evaluation; needs use_sim_time) the sim is repeatable on a loaded machine: it
steps a period only once the controller has commanded the last one (every group that commands),
and it stops at the camera frame a policy node asked for on `vla/policy_ready`
(sensor_msgs/TimeReference: `header.stamp` the frames it has decided on, `time_ref` the sim time
of the next observation it wants) until the node has answered that frame, so inference takes no
sim time. After ~/reset the clock moves on to the next multiple of EPISODE_ORIGIN_S, so an
episode's stamps are the same floating-point numbers in every run, and the sim stops at the
first frame. An evaluation resets the sim and the controller while the sim is `paused`, so both
restart at the episode's first step. A participant silent for `lockstep_timeout_s` is waited for
no longer until it speaks again (counted on diagnostics).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import mujoco
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy._rclpy_pybind11 import RCLError
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import ColorRGBA, Float64MultiArray, Header, String
from std_srvs.srv import Trigger
from transforms3d.quaternions import mat2quat
from visualization_msgs.msg import Marker, MarkerArray

from vla_ros.control.rate import PreciseRate
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.nodes import sim_cameras
from vla_ros.nodes.base import OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.polled import polled_subscription, take_all, take_latest
from vla_ros.ros.qos import LATCHED, RELIABLE
from vla_ros.ros.task_status import SimStatus, to_status_msg
from vla_ros.ros.time import STAMP_TOLERANCE_S, to_seconds, to_stamp
from vla_ros.sim.episode import phrasing_rng, start_episode, step
from vla_ros.sim.hardware import CommandRejected, SimHardware
from vla_ros.sim.perturb import PERTURBATIONS, perturb
from vla_ros.sim.tasks import PHRASINGS
from vla_ros.sim.world import COLOURS, CUBE_SIZE, TRAY_RGBA, TRAY_SIZE, TRAY_WALL, World
from vla_ros.stats import Window

MAX_LAG_S = 0.2  # [s] a fall this far behind is a stall: diagnostics go WARN
COMMAND_AGE_WINDOW = 1000  # physics steps in the command-age percentiles (2 s at 500 Hz)
STATUS_RATE_HZ = 25.0  # sim/task_status, sim/objects and odom per sim second
LOCKSTEP_POLL_S = 0.0002  # [s] how often a sim in lockstep looks for the command or answer it waits for
EPISODE_ORIGIN_S = 1000.0  # [s] in lockstep, a reset moves the clock on to the next multiple of this


@dataclass(frozen=True)
class SimParams(RobotParams):
    """sim_node's parameters."""

    task: str = param("reach", "task spec of the next ~/reset, e.g. reach:red, push:blue:left", dynamic=True)
    seed: int = param(0, "scene seed of the next ~/reset", low=0, high=2**31 - 1, dynamic=True)
    phrasing: str = param("canonical", "how the next ~/reset words the instruction (a split's phrasing is drawn "
                          "from the seed)", choices=PHRASINGS, dynamic=True)
    perturb: str = param("none", "perturbation of the next ~/reset's episode: none, distractor (a can in the "
                         "tool's path), nudge (the cube jumps as the tool nears), lure (another cube beside it)",
                         choices=tuple(PERTURBATIONS), dynamic=True)
    real_time_factor: float = param(1.0, "sim seconds per wall second; 0: as fast as possible", low=0.0, high=100.0)
    command_timeout_s: float = param(0.25, "brakes go on for a group without commands this long [s]",
                                     low=0.001, high=10.0)
    base_timeout_s: float = param(0.5, "the base stops without cmd_vel this long [s]", low=0.001, high=10.0)
    effort_timeout_s: float = param(0.25, "an effort group without a torque this long floats (gravity compensated, "
                                    "damped) until command_timeout_s brakes it: a torque fits only the state it was "
                                    "computed from [s]", low=0.001, high=10.0)
    reset_settle_s: float = param(0.25, "after ~/reset, commands are dropped this long and the brakes hold the new "
                                  "pose (what was commanding still tracked the old one) [s]", low=0.0, high=5.0)
    max_catch_up_s: float = param(MAX_LAG_S, "a sim that fell behind steps at most this much sim time back to back to "
                                  "catch up and gives the rest up: the world pauses [s]", low=0.0, high=1.0)
    clock_rate_hz: float = param(100.0, "/clock messages per sim second (at most one per control period): every "
                                 "node on sim time takes each one in Python", low=1.0, high=10000.0)
    publish_cameras: bool = param(True, "render and publish the cameras")
    paused: bool = param(False, "hold the world still: no steps, no sim time (on the wall clock the stamps jump over "
                         "the pause); an evaluation in lockstep resets the sim and the controller while paused",
                         dynamic=True)
    lockstep: bool = param(False, "evaluation mode (needs use_sim_time): step only once the controller has commanded "
                           "the last period, and stop at each camera frame policy_node asked for until it has answered")
    lockstep_timeout_s: float = param(5.0, "in lockstep, a controller or policy node that has not answered this long "
                                      "[wall s] is waited for no longer until it speaks again", low=0.01, high=60.0)


class SimNode(VlaNode):
    """The MuJoCo robot behind real topics (see the module docstring)."""

    params_type = SimParams
    realtime = True

    def __init__(self):
        super().__init__("sim_node")
        params = self.params
        embodiment = load_embodiment(params.embodiment)
        self.hardware_id = embodiment.name
        self.world = World(embodiment)
        self.hardware = SimHardware(self.world, params.command_timeout_s, params.base_timeout_s,
                                    params.reset_settle_s, params.effort_timeout_s)
        self.control_dt = 1.0 / embodiment.control_rate_hz
        self.substeps = max(1, round(self.control_dt / self.world.model.opt.timestep))
        self.clock_every = max(1, round(embodiment.control_rate_hz / params.clock_rate_hz))
        self.status_every = max(1, round(embodiment.control_rate_hz / STATUS_RATE_HZ))
        self.use_sim_time = self.get_parameter("use_sim_time").value
        self.clock = 0.0  # sim seconds since start, across episodes
        self.lock = threading.Lock()
        self.rejected = 0
        self.publish_failures = 0  # state messages the middleware refused to send
        self.last_rejected = ""

        self.joint_states = self.create_publisher(JointState, "joint_states", RELIABLE)
        self.clock_pub = self.create_publisher(Clock, "/clock", RELIABLE)  # where use_sim_time looks, in any namespace
        self.instruction_pub = self.create_publisher(String, "vla/instruction", LATCHED)
        self.status_pub = self.create_publisher(DiagnosticStatus, "sim/task_status", RELIABLE)
        self.objects_pub = self.create_publisher(MarkerArray, "sim/objects", RELIABLE)
        self.odom_pub = self.create_publisher(Odometry, "odom", RELIABLE) if embodiment.base else None
        # The physics thread takes the newest command of each group before each step.
        self.command_subs = {group.name: polled_subscription(self, Float64MultiArray, group.command_topic)
                             for group in embodiment.commanded_groups}
        self.twist_sub = polled_subscription(self, Twist, embodiment.base.command_topic) if embodiment.base else None
        self.create_service(Trigger, "~/reset", self._on_reset)
        if params.lockstep and not self.use_sim_time:
            raise VlaRosError("lockstep needs use_sim_time:=true: a sim that waits for its controller and policy "
                              "falls behind the wall clock, and every node must follow its /clock")
        self.lockstep = params.lockstep
        self.policy_answers = polled_subscription(self, TimeReference, "vla/policy_ready", RELIABLE) \
            if params.lockstep else None
        self.commanding: set[str] = set()  # groups the controller commands: a lockstep step waits for each
        self.policy_plan = math.inf  # [s] sim time of the next observation the policy wants
        self.policy_present = False  # a policy node answers: a lockstep sim stops at the frames it wants
        self.stop_at_next_frame = False  # set by ~/reset: the new episode's first frame waits for the policy
        self.lockstep_timeouts = {"controller": 0, "policy": 0}
        self.policy_stops = 0
        if embodiment.delegated_groups:
            legs = ", ".join(g.name for g in embodiment.delegated_groups)
            self.get_logger().info(f"delegated groups ({legs}) are held by a stand-in balance stack: "
                                   "welded root link and stiff joint hold")

        self.episode = -1  # counts resets
        self.clock_base = 0.0 if self.use_sim_time else time.time()
        self._reset_episode()
        self.camera_worker, self.camera_pipe = None, None
        if params.publish_cameras and embodiment.cameras:
            topics = [sim_cameras.CameraTopic(name, self.resolve_topic_name(camera.topic))
                      for name, camera in embodiment.cameras.items()]
            self.camera_worker, self.camera_pipe = sim_cameras.start(
                str(embodiment.path), topics, f"{self.get_name()}_cameras", self.get_namespace(),
                params.diagnostics_period_s)
        rate_hz = params.real_time_factor / self.control_dt
        self.rate = PreciseRate(rate_hz, max_lag=max(1,
                                                     round(params.max_catch_up_s * rate_hz))) if rate_hz > 0 else None
        self.given_up_s = 0.0  # wall time the physics gave up after falling behind
        self.stalls = 0  # falls past MAX_LAG_S
        self.command_ages = Window(COMMAND_AGE_WINDOW)  # [s] of the oldest command applied, per step
        self.start_loop(self._physics_loop, "physics")

    # -- inputs (executor threads) ----------------------------------------------------------
    def _take_commands(self) -> set[str]:
        """Hand the newest command of each group (and the base) to the hardware; the groups commanded. Lock held."""
        commanded = set()
        for group, subscription in self.command_subs.items():
            msg = take_latest(subscription)
            if msg is not None:
                commanded.add(group)
                try:
                    self.hardware.command(group, msg.data, self.world.data.time)
                except CommandRejected as error:
                    self._rejected(error)
        msg = take_latest(self.twist_sub) if self.twist_sub is not None else None
        if msg is not None:
            try:
                self.hardware.command_base([msg.linear.x, msg.linear.y, msg.angular.z], self.world.data.time)
            except CommandRejected as error:
                self._rejected(error)
        return commanded

    def _rejected(self, error: CommandRejected) -> None:
        self.rejected += 1
        self.last_rejected = str(error)
        self.get_logger().warning(str(error), throttle_duration_sec=2.0)

    def _on_reset(self, request, response):
        try:
            with self.lock:
                self._reset_episode()
        except VlaRosError as error:
            response.success, response.message = False, str(error)
            return response
        response.success, response.message = True, self.instruction
        return response

    # -- simulation ------------------------------------------------------------------------
    def _reset_episode(self) -> None:
        """Called with the lock held (or before the threads start)."""
        params = self.params
        self.task = start_episode(self.world, self.hardware, params.task, params.seed)
        self.perturbation = perturb(params.perturb, self.world, self.task, params.seed)
        self.instruction = self.task.instruction if params.phrasing == "canonical" else \
            self.task.phrase(params.phrasing, phrasing_rng(params.seed))
        self.episode += 1
        if self.lockstep:  # each episode starts at a whole EPISODE_ORIGIN_S: the same stamps, the same arithmetic
            self.clock = math.ceil(self.clock / EPISODE_ORIGIN_S) * EPISODE_ORIGIN_S
        self.status = self.task.update(0.0)
        self.stop_at_next_frame = True
        self.episode_start = self.clock
        self.next_camera = {name: self.clock for name in self.world.embodiment.cameras}
        self.instruction_pub.publish(String(data=self.instruction))
        self.get_logger().info(f"episode: task {self.task.spec}, seed {params.seed}: {self.instruction!r}")
        if params.perturb != "none":
            self.get_logger().info(f"perturbation {params.perturb}: {self.perturbation.done or 'found no fair place'}")
        if self.world.unreached:
            homes = ", ".join(f"groups.{arm.name}.home" for arm in self.world.arms)
            self.get_logger().warning(
                f"no arm reaches the {', '.join(self.world.unreached)} cube(s) with its tool pointing down: they lie "
                f"where they could go, and reaching them will fail; give {homes} a start pose that holds the "
                "tool pointing down a little above the table", throttle_duration_sec=60.0)

    def _physics_loop(self) -> None:
        # Sim time starts now: stamps track the wall clock from here (a sim behind real time shows
        # as stale stamps, which it is), or start at 0 with use_sim_time.
        self.clock_base = 0.0 if self.use_sim_time else time.time() - self.clock
        self.stamp_origin, given_up_before = self.clock_base, self.given_up_s
        if self.rate is not None:
            self.rate.start()  # with the clock: periods before now (the camera worker starting) are not owed
        tick = 0
        while not self.stopping.is_set():
            if self.params.paused:
                self._pause()
                continue
            waited = self.lockstep and tick > 0 and self._await_commands()
            with self.lock:
                if self.params.paused:  # set while this period waited: a reset made in the pause gets no step
                    continue
                self._take_commands()
                self.command_ages.add(self.hardware.oldest_command_age(float(self.world.data.time)))
                step(self.world, self.hardware, self.substeps, self.control_dt)
                self.perturbation.update()
                self.clock += self.control_dt
                self.status = self.task.update(self.control_dt)
                try:
                    self._publish_state(tick)
                except RCLError as error:
                    if not self.context.ok():
                        raise
                    # Fast DDS can refuse a message under load (a reliable reader that does not
                    # acknowledge in time): the robot does not stop for that; the next one goes out.
                    self.publish_failures += 1
                    self.get_logger().warning(f"a state message was not sent: {error}", throttle_duration_sec=2.0)
                due = [n for n, t in self.next_camera.items() if self.clock + 1e-9 >= t]
                for name in due:
                    self.next_camera[name] += 1.0 / self.world.embodiment.cameras[name].rate_hz
                stop = bool(self.lockstep and due and self.camera_pipe is not None
                            and self._policy_wants(self.clock_base + self.clock))
                if stop:
                    due = list(self.world.embodiment.cameras)  # the frames it decides on, all taken now
                snapshot = (self.clock_base + self.clock, self.world.data.qpos.copy(),
                            self.world.data.mocap_pos.copy(), due)
            if due and self.camera_pipe is not None:
                self.camera_pipe.send(snapshot)
            if stop:
                waited = self._await_policy(snapshot[0]) or waited
            tick += 1
            if self.rate is None:
                continue
            if waited:  # a lockstep wait is not the sim falling behind: pace on from now
                self.rate.start()
            overruns = self.rate.overruns
            late = self.rate.sleep()
            if self.rate.overruns > overruns:
                with self.lock:
                    self.given_up_s += late
                    self.stalls += late > MAX_LAG_S
                    if not self.use_sim_time:  # in whole periods: stamps stay on the control period's grid
                        periods = math.floor((self.given_up_s - given_up_before) / self.control_dt)
                        self.clock_base = self.stamp_origin + periods * self.control_dt

    def _pause(self) -> None:
        """Wait while `paused`; then pace on from now, and on the wall clock jump the stamps over the pause."""
        began = time.monotonic()
        while self.params.paused and not self.stopping.wait(LOCKSTEP_POLL_S):
            pass
        if self.rate is not None:
            self.rate.start()
        if not self.use_sim_time:  # in whole periods: stamps stay on the control period's grid
            shift = math.floor((time.monotonic() - began) / self.control_dt) * self.control_dt
            with self.lock:
                self.stamp_origin += shift
                self.clock_base += shift

    # -- lockstep ----------------------------------------------------------------------------
    def _await_commands(self) -> bool:
        """Wait until every group the controller commands has commanded the last period; True if it waited.

        Groups join when they command and leave on a timeout (a controller that stopped, or never
        was): then the sim runs on until they command again. What arrives is applied at once.
        """
        missing = set(self.commanding)
        give_up = time.monotonic() + self.params.lockstep_timeout_s
        waited = False
        while not self.stopping.is_set():
            with self.lock:
                commanded = self._take_commands()
            self.commanding |= commanded
            missing -= commanded
            if not missing:
                return waited
            if time.monotonic() > give_up:
                self.lockstep_timeouts["controller"] += 1
                self.get_logger().warning(f"lockstep: no command for {', '.join(sorted(missing))} in "
                                          f"{self.params.lockstep_timeout_s:g} s: stepping without waiting for "
                                          "the controller until it commands again", throttle_duration_sec=5.0)
                self.commanding.clear()
                return True
            waited = True
            time.sleep(LOCKSTEP_POLL_S)
        return waited

    def _policy_wants(self, stamp: float) -> bool:
        """Whether the policy node decides on the frames taken at `stamp` before the sim goes on. Lock held."""
        for answer in take_all(self.policy_answers):
            self.policy_present = True
            self.policy_plan = to_seconds(answer.time_ref)
        first, self.stop_at_next_frame = self.stop_at_next_frame, False
        return self.policy_present and (first or stamp >= self.policy_plan - STAMP_TOLERANCE_S)

    def _await_policy(self, stamp: float) -> bool:
        """Stop until the policy node has answered the frames taken at `stamp`; True (it waited)."""
        self.policy_stops += 1
        give_up = time.monotonic() + self.params.lockstep_timeout_s
        while not self.stopping.is_set():
            for answer in take_all(self.policy_answers):
                if to_seconds(answer.header.stamp) < stamp - STAMP_TOLERANCE_S:
                    continue  # about frames before these (sent before the reset): no answer to them
                self.policy_plan = to_seconds(answer.time_ref)
                if self.policy_plan > stamp + STAMP_TOLERANCE_S:
                    return True
            if time.monotonic() > give_up:
                self.lockstep_timeouts["policy"] += 1
                self.policy_present = False
                self.get_logger().warning(f"lockstep: the policy node did not answer the frames of {stamp:.3f} s in "
                                          f"{self.params.lockstep_timeout_s:g} s: stepping without waiting for it "
                                          "until it answers again", throttle_duration_sec=5.0)
                return True
            time.sleep(LOCKSTEP_POLL_S)
        return True

    def _publish_state(self, tick: int) -> None:
        stamp = to_stamp(self.clock_base + self.clock)
        names, position, velocity, effort = self.world.joint_states()
        self.joint_states.publish(JointState(header=Header(stamp=stamp), name=names, position=position.tolist(),
                                             velocity=velocity.tolist(), effort=effort.tolist()))
        if tick % self.clock_every == 0:
            self.clock_pub.publish(Clock(clock=stamp))
        if round((self.clock - self.episode_start) / self.control_dt) % self.status_every == 0:  # from each reset
            self._publish_objects(stamp)
            self._publish_status(stamp)
            if self.odom_pub is not None:
                self._publish_odom(stamp)

    def _publish_objects(self, stamp) -> None:
        to_root = np.linalg.inv(self.world.root_pose())
        markers = MarkerArray()
        for index, colour in enumerate(self.world.colours):
            position, quaternion = self.world.cube_pose(colour)
            pose = np.eye(4)
            pose[:3, :3] = _quat_to_matrix(quaternion)
            pose[:3, 3] = position
            local = to_root @ pose
            w, x, y, z = mat2quat(local[:3, :3])
            marker = Marker(header=Header(stamp=stamp, frame_id=self.world.embodiment.description.root),
                            ns="cubes", id=index, type=Marker.CUBE, action=Marker.ADD, text=f"{colour}_cube",
                            color=ColorRGBA(r=COLOURS[colour][0], g=COLOURS[colour][1], b=COLOURS[colour][2], a=1.0))
            marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = local[:3, 3].tolist()
            marker.pose.orientation.w, marker.pose.orientation.x = float(w), float(x)
            marker.pose.orientation.y, marker.pose.orientation.z = float(y), float(z)
            marker.scale.x = marker.scale.y = marker.scale.z = CUBE_SIZE
            markers.markers.append(marker)
        if self.world.tray is not None:  # the tray's floor centre, turned with the root as the world is
            w, x, y, z = mat2quat(to_root[:3, :3])
            tray = Marker(header=Header(stamp=stamp, frame_id=self.world.embodiment.description.root),
                          ns="receptacles", id=0, type=Marker.CUBE, action=Marker.ADD, text="tray",
                          color=ColorRGBA(r=TRAY_RGBA[0], g=TRAY_RGBA[1], b=TRAY_RGBA[2], a=1.0))
            tray.pose.position.x, tray.pose.position.y, tray.pose.position.z = (
                to_root @ np.append(self.world.tray, 1.0))[:3].tolist()
            tray.pose.orientation.w, tray.pose.orientation.x = float(w), float(x)
            tray.pose.orientation.y, tray.pose.orientation.z = float(y), float(z)
            tray.scale.x = tray.scale.y = TRAY_SIZE
            tray.scale.z = TRAY_WALL
            markers.markers.append(tray)
        self.objects_pub.publish(markers)

    def _publish_status(self, stamp) -> None:
        status = SimStatus(self.task.spec, self.instruction, f"{self.task.target}_cube", self.status.success,
                           self.status.progress, "success" if self.status.success else self.status.detail,
                           self.world.seed, self.episode, self.clock - self.episode_start,
                           self.clock_base + self.clock, tuple(self.hardware.holding(self.world.data.time)))
        self.status_pub.publish(to_status_msg(status, f"{self.get_fully_qualified_name()}/task"))

    def _publish_odom(self, stamp) -> None:
        odom = Odometry(header=Header(stamp=stamp, frame_id="odom"),
                        child_frame_id=self.world.embodiment.description.root)
        pose = self.world.root_pose()
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(pose[0, 3]), float(pose[1, 3])
        w, x, y, z = mat2quat(pose[:3, :3])
        odom.pose.pose.orientation.w, odom.pose.pose.orientation.z = float(w), float(z)
        vx, vy, wz = self.world.base_velocity()
        twist = odom.twist.twist
        twist.linear.x, twist.linear.y, twist.angular.z = float(vx), float(vy), float(wz)
        self.odom_pub.publish(odom)

    def report(self) -> Report:
        holding = self.hardware.holding(self.world.data.time)
        with self.lock:
            age_p99, age_max = self.command_ages.percentile(99), self.command_ages.percentile(100)
            stalls, given_up = self.stalls, self.given_up_s
        values = {
            "embodiment": self.world.embodiment.name, "sim_time_s": f"{self.clock:.2f}",
            "rejected_commands": self.rejected, "last_rejected": self.last_rejected,
            "publish_failures": self.publish_failures,
            "realtime_overruns": stalls,
            "time_given_up_s": f"{given_up:.3f}",
            "command_age_p99_ms": f"{1e3 * age_p99:.1f}",
            "command_age_max_ms": f"{1e3 * age_max:.1f}",
            "real_time_factor": self.params.real_time_factor,
        }
        if self.lockstep:
            values["lockstep_policy_stops"] = self.policy_stops
            values["lockstep_timeouts_controller"] = self.lockstep_timeouts["controller"]
            values["lockstep_timeouts_policy"] = self.lockstep_timeouts["policy"]
        if self.world.embodiment.delegated_groups:
            values["stand_in_balance_stack"] = "welded root, stiff hold of " + ", ".join(
                g.name for g in self.world.embodiment.delegated_groups)
        return Report(WARN if holding or stalls else OK, f"brakes on: {', '.join(holding)}" if holding else "running",
                      values)

    def on_close(self) -> None:
        if self.camera_pipe is not None:
            self.camera_pipe.close()  # the worker ends at the end of its pipe
            self.camera_worker.join(timeout=5.0)
            self.camera_pipe = None


def _quat_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, quaternion)
    return matrix.reshape(3, 3)


def main(args=None):
    run(SimNode, args)


if __name__ == "__main__":
    main()
