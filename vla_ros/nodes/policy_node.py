"""`policy_node`: the VLA policy node: observations from camera and joint-state topics in, action chunks out.

Subscribes each camera (`camera/<name>/image_raw`, sensor-data QoS, newest frame only; or
`.../compressed` with `image_transport:=compressed`), `joint_states`, `odom` for a mobile base,
and `vla/instruction` (transient-local). Publishes `vla/action_chunk` (JointTrajectory of the
layout's joints), `vla/base_chunk` for a base, and `diagnostics`.

A worker thread does all the work: when a chunk is due (vla_ros.policy.schedule) it assembles an
observation from fresh data only: every camera's newest frame no older than `max_image_age_s`,
stamped with the oldest of them, and the joint state nearest that stamp within
`max_state_skew_s`. Stale or missing data means no request, and diagnostics say which input is
at fault. The chunk is published stamped with the observation time, so the controller places it
in time correctly. Backend errors, timeouts and a lost server never stop the node: it publishes
nothing (the controller finishes its chunk and holds), reports, and carries on when the backend
answers again. A new instruction resets the policy and asks at once, with frames taken after it
arrived (an episode reset in the sim teleports the robot: older frames show another scene); a
chunk whose inference was under way when the instruction changed is dropped.

Camera frames and joint states are taken by the worker straight from their subscriptions, not
through the executor (vla_ros.ros.polled), which only handles the instruction and the timers.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.control.rate import Window
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.nodes.common import declare, run
from vla_ros.policy import EmbodimentIO, Observation, PolicyError, make_policy, parse_params
from vla_ros.policy.observation import resize
from vla_ros.policy.schedule import ChunkSchedule
from vla_ros.ros.diagnostics import ERROR, OK, WARN, diagnostic_array
from vla_ros.ros.image import from_compressed_msg, from_image_msg
from vla_ros.ros.joint_state import JointStateReader
from vla_ros.ros.polled import polled_subscription, take_all, take_latest
from vla_ros.ros.time import to_seconds, to_stamp
from vla_ros.ros.trajectory import to_base_chunk_msg, to_chunk_msg

TRANSIENT_LOCAL = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TICK_S = 0.005  # the worker's polling period while it waits for a chunk to fall due


class NotReady(Exception):
    """No observation can be built now; the message says which input is at fault."""


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        self.embodiment = load_embodiment(declare(self, "embodiment", "arm7", "embodiment name or file", read_only=True))
        self.backend = declare(self, "policy", "hold", "policy backend: hold, replay, remote, builtin", read_only=True)
        params = parse_params(declare(self, "policy_params", "", "backend parameters as a YAML mapping, "
                                      "e.g. '{url: ws://gpu-box:8000}'", read_only=True))
        checkpoint = declare(self, "checkpoint", "", "checkpoint for the builtin backend", read_only=True)
        if checkpoint:
            params["checkpoint"] = checkpoint
        self.max_image_age = declare(self, "max_image_age_s", 0.3, "oldest camera frame an observation may use [s]",
                                     low=0.001, high=10.0)
        self.max_state_skew = declare(self, "max_state_skew_s", 0.05, "largest gap between the image stamp and the "
                                      "joint state used with it [s]", low=0.0, high=1.0)
        self.instruction = declare(self, "instruction", "", "instruction to use until one arrives on vla/instruction")
        fraction = declare(self, "request_fraction", 0.5, "request the next chunk when this fraction of the "
                           "executing one is left", low=0.0, high=1.0)
        rate = declare(self, "request_rate_hz", 0.0, "request chunks at this fixed rate instead (0: by fraction)",
                       low=0.0, high=1000.0)
        window = declare(self, "latency_window", 20, "inference latencies in the delay estimate", read_only=True,
                         low=1, high=10000)
        warmup = declare(self, "warmup_requests", 2, "first requests left out of the delay estimate", read_only=True,
                         low=0, high=1000)
        self.retry = declare(self, "retry_s", 0.2, "pause after a backend error before the next request [s]",
                             low=0.0, high=60.0)
        transport = declare(self, "image_transport", "raw", "raw (Image) or compressed (CompressedImage on "
                            "<topic>/compressed)", read_only=True)
        period = declare(self, "diagnostics_period_s", 1.0, "diagnostics period [s]", read_only=True, low=0.05, high=60.0)
        if transport not in ("raw", "compressed"):
            raise VlaRosError(f"image_transport {transport!r} is not raw or compressed")
        if not self.embodiment.cameras:
            raise VlaRosError(f"embodiment {self.embodiment.name} has no cameras: a VLA policy needs at least one")

        self.io = EmbodimentIO(self.embodiment)
        self.policy = make_policy(self.backend, self.embodiment, params)
        self.schedule = ChunkSchedule(fraction, rate, window, warmup)
        self.reader = JointStateReader(self.io.joints)

        compressed = transport == "compressed"
        self.cameras = {
            name: polled_subscription(self, CompressedImage if compressed else Image,
                                      f"{camera.topic}/compressed" if compressed else camera.topic,
                                      qos_profile_sensor_data)
            for name, camera in self.embodiment.cameras.items()
        }
        self.decode = from_compressed_msg if compressed else from_image_msg
        self.frames: dict[str, object] = {}
        self.joint_states = polled_subscription(self, JointState, "joint_states", 100)
        self.states: deque[tuple[float, JointState]] = deque(maxlen=1000)
        self.odom = polled_subscription(self, Odometry, "odom", 10) if self.io.base else None
        self.odometry: deque[tuple[float, Odometry]] = deque(maxlen=100)
        self.chunks = self.create_publisher(JointTrajectory, "vla/action_chunk", 10)
        self.base_chunks = self.create_publisher(MultiDOFJointTrajectory, "vla/base_chunk", 10) if self.io.base else None
        self.diagnostics = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_subscription(String, "vla/instruction", self._on_instruction, TRANSIENT_LOCAL)

        self.new_instruction = threading.Event()
        self.instructions_seen = 0  # counts instructions; a chunk asked for under an older one is dropped
        self.instruction_stamp = -np.inf  # [s] observations for the current instruction are newer
        if self.instruction:
            self.new_instruction.set()
        self.latency = Window(window)
        self.overhead = Window(200)
        self.age = Window(window)
        self.published = 0
        self.published_reported = 0
        self.errors = 0
        self.waiting = "starting"
        self.last_error = ""
        self.last_report = time.monotonic()
        self.create_timer(period, self._publish_diagnostics)
        self.running = True
        self.worker = threading.Thread(target=self._work, name="policy_worker", daemon=True)
        self.worker.start()
        self.get_logger().info(f"policy {self.backend!r} for {self.embodiment.name}: cameras "
                               f"{', '.join(self.cameras)}, {len(self.io.joints)} joints"
                               f"{', base ' + self.io.base if self.io.base else ''}")

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self.instructions_seen += 1
        self.instruction_stamp = self._now()
        self.new_instruction.set()
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _work(self) -> None:
        while self.running:
            self._drain()
            if self.new_instruction.is_set():
                self.new_instruction.clear()
                self._reset()
            now = self._now()
            if not self.instruction:
                self.waiting = "waiting for an instruction on vla/instruction"
            elif self.schedule.due(now):
                try:
                    self._request(now)
                    continue
                except NotReady as reason:
                    self.waiting = str(reason)
            time.sleep(TICK_S)

    def _reset(self) -> None:
        try:
            self.policy.reset()
        except PolicyError as error:
            self._failed(error)
        self.schedule.restart()

    def _drain(self) -> None:
        """Move what arrived into the frame and state buffers (the worker's only input)."""
        for name, subscription in self.cameras.items():
            frame = take_latest(subscription)
            if frame is not None:
                self.frames[name] = frame
        for msg in take_all(self.joint_states):
            self.states.append((to_seconds(msg.header.stamp), msg))
        if self.odom is not None:
            for msg in take_all(self.odom):
                self.odometry.append((to_seconds(msg.header.stamp), msg))

    def _observation(self, now: float) -> Observation:
        stamps = {}
        for name in self.cameras:
            frame = self.frames.get(name)
            if frame is None:
                raise NotReady(f"no frame from camera {name} yet")
            stamps[name] = to_seconds(frame.header.stamp)
            if now - stamps[name] > self.max_image_age:
                raise NotReady(f"camera {name} is stale: newest frame {now - stamps[name]:.3f} s old "
                               f"(max_image_age_s {self.max_image_age})")
        stamp = min(stamps.values())
        if stamp < self.instruction_stamp:
            raise NotReady("waiting for camera frames taken after the new instruction")
        executing = self.schedule.executing
        if executing is not None and stamp <= executing.stamp:
            raise NotReady("no frame newer than the last observation")
        state = self._nearest(self.states, stamp, "joint_states")
        try:
            positions, _ = self.reader.read(state)
        except VlaRosError as error:
            raise NotReady(str(error)) from None
        base_velocity = None
        if self.odom is not None:
            twist = self._nearest(self.odometry, stamp, "odom").twist.twist
            base_velocity = (twist.linear.x, twist.linear.y, twist.angular.z)
        wanted = self.policy.metadata.get("cameras", {})
        images = {}
        for name, frame in self.frames.items():
            try:
                rgb = self.decode(frame)
            except VlaRosError as error:
                raise NotReady(f"camera {name}: {error}") from None
            height, width, _ = wanted.get(name, rgb.shape)
            images[name] = resize(rgb, height, width)
        return Observation(images, self.io.state(positions, base_velocity), self.instruction, stamp)

    def _nearest(self, history: deque, stamp: float, topic: str):
        if not history:
            raise NotReady(f"no {topic} yet")
        # Newest first: stamps rise and the image is at most max_image_age_s old, so this stops after
        # a few entries instead of converting the whole history (1000 entries at 500 Hz).
        best_stamp, best = history[-1]
        for entry_stamp, msg in reversed(history):
            if abs(entry_stamp - stamp) < abs(best_stamp - stamp):
                best_stamp, best = entry_stamp, msg
            elif entry_stamp < stamp:
                break
        if abs(best_stamp - stamp) > self.max_state_skew:
            raise NotReady(f"no {topic} within {self.max_state_skew} s of the image stamp "
                           f"(nearest {best_stamp - stamp:+.3f} s)")
        return best

    def _request(self, now: float) -> None:
        ready = time.perf_counter()
        asked_under = self.instructions_seen
        observation = self._observation(now)
        self.schedule.requested(now)
        prefix = None
        if self.policy.supports_prefix and self.schedule.executing is not None:
            dt = self.schedule.executing.dt
            prefix = self.schedule.prefix(observation.stamp, dt, now + self.schedule.delay)
        started = time.perf_counter()
        try:
            chunk = self.policy.infer(observation, prefix)
            actions = np.asarray(chunk.actions, dtype=float)
            if actions.ndim != 2 or actions.shape[1] != self.io.size or not np.all(np.isfinite(actions)):
                raise PolicyError(f"the backend returned actions of shape {actions.shape} with "
                                  f"{int(np.sum(~np.isfinite(actions)))} non-finite values; expected (H, {self.io.size}) finite")
        except PolicyError as error:
            self._failed(error)
            time.sleep(self.retry)
            return
        model = time.perf_counter() - started
        if self.instructions_seen != asked_under:
            return  # the instruction changed while the model thought: this chunk answers the old one
        end = observation.stamp + chunk.times[-1]
        if end <= self._now():
            self._failed(PolicyError(f"the chunk arrived after its last point ({model:.3f} s inference for "
                                     f"{chunk.times[-1]:.3f} s of actions): dropped"))
            return
        positions, base = self.io.split(actions)
        self.chunks.publish(to_chunk_msg(self.io.joints, chunk.times, positions, observation.stamp))
        if base is not None:
            self.base_chunks.publish(to_base_chunk_msg(self.io.base, chunk.times, base, observation.stamp))
        self.overhead.add(time.perf_counter() - ready - model)
        self.schedule.answered(chunk, model)
        self.latency.add(model)
        self.age.add(now - observation.stamp)
        self.published += 1
        self.waiting = ""
        self.last_error = ""

    def _failed(self, error: PolicyError) -> None:
        self.errors += 1
        if str(error) != self.last_error:
            self.get_logger().warning(f"no chunk: {error}")
        self.last_error = str(error)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        rate = (self.published - self.published_reported) / (now - self.last_report)
        self.published_reported, self.last_report = self.published, now
        if self.last_error:
            level, message = ERROR, f"no chunks: {self.last_error}"
        elif self.waiting:
            level, message = WARN, self.waiting
        else:
            level, message = OK, f"{rate:.1f} chunks/s"
        values = {
            "backend": self.backend,
            "backend_state": self.policy.state,
            "instruction": self.instruction,
            "chunks_per_s": f"{rate:.2f}",
            "chunks_published": self.published,
            "errors": self.errors,
            "inference_p50_ms": f"{self.latency.percentile(50) * 1e3:.1f}",
            "inference_p95_ms": f"{self.latency.percentile(95) * 1e3:.1f}",
            "delay_estimate_ms": f"{self.schedule.delay * 1e3:.1f}",
            "observation_age_ms": f"{self.age.percentile(50) * 1e3:.1f}",
            "overhead_p50_ms": f"{self.overhead.percentile(50) * 1e3:.3f}",
            "overhead_p99_ms": f"{self.overhead.percentile(99) * 1e3:.3f}",
        }
        self.diagnostics.publish(diagnostic_array(to_stamp(self._now()), "vla_ros/policy_node", level, message, values))

    def close(self) -> None:
        self.running = False
        self.worker.join(timeout=5.0)
        self.policy.close()


def main(args=None):
    # Ctrl-C stops the worker before ROS shuts down: a chunk published while the middleware shuts
    # down raised from the worker thread ("publisher's context is invalid").
    run(PolicyNode, args, graceful_stop=True)


if __name__ == "__main__":
    main()
