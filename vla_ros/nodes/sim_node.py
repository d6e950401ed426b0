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
from sensor_msgs.msg import JointState
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
from vla_ros.ros.polled import polled_subscription, take_latest
from vla_ros.ros.qos import LATCHED, RELIABLE
from vla_ros.ros.task_status import SimStatus, to_status_msg
from vla_ros.ros.time import to_stamp
from vla_ros.sim.episode import phrasing_rng, start_episode, step
from vla_ros.sim.hardware import CommandRejected, SimHardware
from vla_ros.sim.perturb import PERTURBATIONS, perturb
from vla_ros.sim.tasks import PHRASINGS
from vla_ros.sim.world import COLOURS, CUBE_SIZE, TRAY_RGBA, TRAY_SIZE, TRAY_WALL, World
from vla_ros.stats import Window

MAX_LAG_S = 0.2  # [s] a fall this far behind is a stall: diagnostics go WARN
COMMAND_AGE_WINDOW = 1000  # physics steps in the command-age percentiles (2 s at 500 Hz)
STATUS_RATE_HZ = 25.0  # sim/task_status, sim/objects and odom per sim second


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
        self.clock_pub = self.create_publisher(Clock, "clock", RELIABLE)
        self.instruction_pub = self.create_publisher(String, "vla/instruction", LATCHED)
        self.status_pub = self.create_publisher(DiagnosticStatus, "sim/task_status", RELIABLE)
        self.objects_pub = self.create_publisher(MarkerArray, "sim/objects", RELIABLE)
        self.odom_pub = self.create_publisher(Odometry, "odom", RELIABLE) if embodiment.base else None
        # The physics thread takes the newest command of each group before each step.
        self.command_subs = {group.name: polled_subscription(self, Float64MultiArray, group.command_topic)
                             for group in embodiment.commanded_groups}
        self.twist_sub = polled_subscription(self, Twist, embodiment.base.command_topic) if embodiment.base else None
        self.create_service(Trigger, "~/reset", self._on_reset)
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
    def _take_commands(self) -> None:
        """Hand the newest command of each group (and the base) to the hardware; lock held."""
        for group, subscription in self.command_subs.items():
            msg = take_latest(subscription)
            if msg is not None:
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
        self.status = self.task.update(0.0)
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
        start_base, given_up_before = self.clock_base, self.given_up_s
        if self.rate is not None:
            self.rate.start()  # with the clock: periods before now (the camera worker starting) are not owed
        tick = 0
        while not self.stopping.is_set():
            with self.lock:
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
                snapshot = (self.clock_base + self.clock, self.world.data.qpos.copy(),
                            self.world.data.mocap_pos.copy(), due)
            if due and self.camera_pipe is not None:
                self.camera_pipe.send(snapshot)
            tick += 1
            if self.rate is None:
                continue
            overruns = self.rate.overruns
            late = self.rate.sleep()
            if self.rate.overruns > overruns:
                with self.lock:
                    self.given_up_s += late
                    self.stalls += late > MAX_LAG_S
                    if not self.use_sim_time:  # in whole periods: stamps stay on the control period's grid
                        periods = math.floor((self.given_up_s - given_up_before) / self.control_dt)
                        self.clock_base = start_base + periods * self.control_dt

    def _publish_state(self, tick: int) -> None:
        stamp = to_stamp(self.clock_base + self.clock)
        names, position, velocity, effort = self.world.joint_states()
        self.joint_states.publish(JointState(header=Header(stamp=stamp), name=names, position=position.tolist(),
                                             velocity=velocity.tolist(), effort=effort.tolist()))
        if tick % self.clock_every == 0:
            self.clock_pub.publish(Clock(clock=stamp))
        if tick % self.status_every == 0:
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
