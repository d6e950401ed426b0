"""`policy_node`: the VLA policy node: observations from camera and joint-state topics in, action chunks out.

Subscribes each camera (`camera/<name>/image_raw`, sensor-data QoS, newest frame only; or
`.../compressed` with `image_transport:=compressed`), `joint_states`, `odom` for a mobile base,
and `vla/instruction` (transient-local). Publishes `vla/action_chunk` (JointTrajectory of the
layout's joints) and `vla/base_chunk` for a base.

A worker thread does all the work: when a chunk is due (vla_ros.policy.schedule) it assembles an
observation from fresh data only: every camera's newest frame no older than `max_image_age_s`,
stamped with the oldest of them, and the joint state nearest that stamp within
`max_state_skew_s`. Stale or missing data means no request, and diagnostics say which input is
at fault. Whatever action space the backend answers in (joint positions, deltas or velocities,
tool deltas or poses), vla_ros.policy.spaces turns the chunk into joint positions from the
observed state. The chunk is published stamped with the observation time, so the controller
places it in time correctly. Backend errors, timeouts and a lost server never stop the node: it publishes
nothing (the controller finishes its chunk and holds), reports, and carries on when the backend
answers again. A new instruction resets the policy and asks at once, with frames taken after it
arrived (an episode reset in the sim teleports the robot: older frames show another scene); a
chunk whose inference was under way when the instruction changed is dropped. While a person
drives (vla/intervention true) the node asks for nothing; when they hand back it resets the
policy and asks at once, from frames taken after the hand-back (the pose the person left).

With `lockstep` (beside a sim_node in lockstep, on sim time) the node decides on each set of
frames as of their stamp and answers on `vla/policy_ready` (sensor_msgs/TimeReference: the
frames' stamp, and in `time_ref` the sim time of the next observation it wants); the sim stops at
that observation until the answer comes, so inference takes no sim time and an evaluation does
the same on every run.

Camera frames and joint states are taken by the worker straight from their subscriptions, not
through the executor (vla_ros.ros.polled), which only handles the instruction and the timers.
Each input is checked as it arrives: a frame that is no picture (unknown encoding, sizes that
disagree with its data, empty), a joint state that cannot be read (missing or repeated joints,
lengths that disagree, NaN), an instruction longer than MAX_PROMPT_CHARS or not UTF-8 text
is refused, counted on diagnostics (`rejected_frames`, `rejected_joint_states`,
`rejected_instructions`, `last_rejection`) and never displaces the last good one.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, JointState, TimeReference
from std_msgs.msg import Bool, Header, String
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.media import resize
from vla_ros.nodes.base import ERROR, OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.policy import ActionChunk, ActionSpace, Observation, PolicyError, make_policy, parse_params
from vla_ros.policy.observation import MAX_PROMPT_CHARS
from vla_ros.policy.registry import MODULES
from vla_ros.policy.schedule import ChunkSchedule
from vla_ros.policy.spaces import ChunkAdapter
from vla_ros.ros.image import from_compressed_msg, from_image_msg
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_all, take_latest
from vla_ros.ros.qos import LATCHED, RELIABLE, SENSOR_DATA
from vla_ros.ros.time import STAMP_TOLERANCE_S, to_seconds, to_stamp
from vla_ros.ros.trajectory import to_base_chunk_msg, to_chunk_msg
from vla_ros.stats import Window

TICK_S = 0.005  # the worker's polling period while it waits for a chunk to fall due
LOCKSTEP_TICK_S = 0.001  # in lockstep: the sim waits for the answer, so look for frames more often
NEVER_S = 1e9  # [s] sim time of the next wanted observation when the node wants none
NEXT_FRAME_S = 1e-3  # [s] "the next frame" as a wanted observation time: later than these, sooner than any other
STATE_HISTORY = 1000  # joint_states kept to find the one nearest an image (2 s at 500 Hz)
ODOM_HISTORY = 100
OVERHEAD_WINDOW = 200  # requests in the node-overhead percentiles


@dataclass(frozen=True)
class BackendParams(RobotParams):
    """The parameters of a node that runs a policy backend (policy_node, policy_server)."""

    policy: str = param("hold", f"policy backend: {', '.join(MODULES)}")
    policy_params: str = param("", "the backend's parameters as a YAML mapping, e.g. '{url: ws://gpu-box:8000}'")
    checkpoint: str = param("", "checkpoint of the builtin backend (empty: its default, the shipped one)")

    def backend(self) -> dict[str, object]:
        """The backend's keyword parameters: `policy_params`, with `checkpoint` when given."""
        params = parse_params(self.policy_params)
        if self.checkpoint:
            params["checkpoint"] = self.checkpoint
        return params


@dataclass(frozen=True)
class PolicyParams(BackendParams):
    """policy_node's parameters."""

    instruction: str = param("", "instruction to use until one arrives on vla/instruction (empty: wait for one)")
    max_image_age_s: float = param(0.3, "oldest camera frame an observation may use [s]", low=0.001, high=10.0,
                                   dynamic=True)
    max_state_skew_s: float = param(0.05, "largest gap between the image stamp and the joint state used with it [s]",
                                    low=0.0, high=1.0, dynamic=True)
    request_fraction: float = param(0.5, "request the next chunk when this fraction of the executing one is left",
                                    low=0.0, high=1.0, dynamic=True)
    request_rate_hz: float = param(0.0, "request chunks at this fixed rate instead (0: by request_fraction)",
                                   low=0.0, high=1000.0, dynamic=True)
    latency_window: int = param(20, "inference latencies in the delay estimate", low=1, high=10000)
    warmup_requests: int = param(2, "first requests left out of the delay estimate", low=0, high=1000)
    retry_s: float = param(0.2, "pause after a backend error before the next request [s]", low=0.0, high=60.0,
                           dynamic=True)
    lockstep: bool = param(False, "decide on each set of frames as of its stamp and answer on vla/policy_ready, for "
                           "a sim_node in lockstep (evaluation; needs use_sim_time)")
    image_transport: str = param("raw", "raw (sensor_msgs/Image) or compressed (CompressedImage on <topic>/compressed)",
                                 choices=("raw", "compressed"))


class NotReady(Exception):
    """No observation can be built now; the message says which input is at fault."""


class PolicyNode(VlaNode):
    """The VLA policy node (see the module docstring)."""

    params_type = PolicyParams

    def __init__(self):
        super().__init__("policy_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        if not self.embodiment.cameras:
            raise VlaRosError(f"embodiment {self.embodiment.name} has no cameras: a VLA policy needs at least one")
        self.io = EmbodimentIO(self.embodiment)
        self.policy = make_policy(self.params.policy, self.embodiment, self.params.backend())
        self.adapters: dict[ActionSpace, ChunkAdapter] = {}
        self.space = ""
        self.schedule = ChunkSchedule(self.params.request_fraction, self.params.request_rate_hz,
                                      self.params.latency_window, self.params.warmup_requests)
        self.reader = JointStateReader(self.io.joints)
        self.use_sim_time = self.get_parameter("use_sim_time").value

        compressed = self.params.image_transport == "compressed"
        self.cameras = {
            name: polled_subscription(self, CompressedImage if compressed else Image,
                                      f"{camera.topic}/compressed" if compressed else camera.topic, SENSOR_DATA)
            for name, camera in self.embodiment.cameras.items()
        }
        self.decode = from_compressed_msg if compressed else from_image_msg
        self.frames: dict[str, tuple[float, np.ndarray]] = {}  # camera -> (stamp, RGB) of its newest good frame
        self.joint_states = polled_subscription(self, JointState, "joint_states", 100)
        self.states: deque[tuple[float, np.ndarray]] = deque(maxlen=STATE_HISTORY)  # (stamp, positions)
        self.odom = polled_subscription(self, Odometry, "odom", RELIABLE) if self.io.base else None
        self.odometry: deque[tuple[float, Odometry]] = deque(maxlen=ODOM_HISTORY)
        self.chunks = self.create_publisher(JointTrajectory, "vla/action_chunk", RELIABLE)
        self.base_chunks = self.create_publisher(MultiDOFJointTrajectory, "vla/base_chunk", RELIABLE) \
            if self.io.base else None
        self.create_subscription(String, "vla/instruction", self._on_instruction, LATCHED)
        self.create_subscription(Bool, "vla/intervention", self._on_intervention, RELIABLE)
        if self.params.lockstep and not self.use_sim_time:
            raise VlaRosError("lockstep needs use_sim_time:=true: it decides on frames as of the sim's time")
        self.ready_pub = self.create_publisher(TimeReference, "vla/policy_ready", RELIABLE) \
            if self.params.lockstep else None
        self.answered = -np.inf  # [s] in lockstep: the stamp of the last frames answered

        self.instruction = self.params.instruction
        self.intervening = False  # a person drives: no requests
        self.restart = threading.Event()  # reset the policy and ask at once (a new instruction, a hand-back)
        self.epoch = 0  # counts instructions and interventions; a chunk asked for in an older epoch is dropped
        self.fresh_after = -np.inf  # [s] observations of the current epoch are newer
        if self.instruction:
            self.restart.set()
        self.latency = Window(self.params.latency_window)
        self.overhead = Window(OVERHEAD_WINDOW)
        self.age = Window(self.params.latency_window)
        self.clock_lag = Window(self.params.latency_window)  # [s] newest joint_states stamp - ROS time, per request
        self.published = 0
        self.published_reported = 0
        self.errors = 0
        self.rejected = {"frames": 0, "joint_states": 0, "instructions": 0}
        self.last_rejection = ""
        self.waiting = "starting"
        self.last_error = ""
        self.last_report = time.monotonic()
        self.start_loop(self._work, "policy_worker")
        self.get_logger().info(f"policy {self.params.policy!r} for {self.embodiment.name}: cameras "
                               f"{', '.join(self.cameras)}, {len(self.io.joints)} joints"
                               f"{', base ' + self.io.base if self.io.base else ''}")

    def on_params(self, old: PolicyParams, new: PolicyParams) -> None:
        self.schedule.fraction, self.schedule.rate_hz = new.request_fraction, new.request_rate_hz

    def _on_instruction(self, msg: String) -> None:
        words = msg.data
        if len(words) > MAX_PROMPT_CHARS:
            self._reject("instructions", f"an instruction of {len(words)} characters (at most "
                                         f"{MAX_PROMPT_CHARS})")
            return
        if "\ufffd" in words:
            self._reject("instructions", "an instruction that is not UTF-8 text")
            return
        self.instruction = words if words.strip() else ""  # blank: no instruction, wait for one
        self._new_epoch()
        self.get_logger().info(f"instruction: {words!r}")

    def _reject(self, what: str, reason: str) -> None:
        """Count a refused input of kind `what` (a key of `rejected`); say why, at most once a second."""
        self.rejected[what] += 1
        self.last_rejection = reason
        self.get_logger().warning(f"refused {reason}", throttle_duration_sec=1.0)

    def _on_intervention(self, msg: Bool) -> None:
        if msg.data == self.intervening:
            return
        self._new_epoch()  # before the worker can see the flag: no request from frames of the old epoch
        self.intervening = msg.data
        self.get_logger().info("a person is driving: no requests" if msg.data else
                               "the person handed back: resuming from where they left the robot")

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.fresh_after = self._time()
        self.restart.set()

    def _work(self) -> None:
        while not self.stopping.is_set():
            self._drain()
            if self.restart.is_set():
                self.restart.clear()
                self._reset()
            if self.params.lockstep:
                self._decide_in_lockstep()
                time.sleep(LOCKSTEP_TICK_S)
                continue
            now = self._time()
            if not self.instruction:
                self.waiting = "waiting for an instruction on vla/instruction"
            elif self.intervening:
                self.waiting = "a person is driving (vla/intervention): no requests"
            elif self.schedule.due(now):
                try:
                    self._request(now)
                    continue
                except NotReady as reason:
                    self.waiting = str(reason)
            time.sleep(TICK_S)

    def _decide_in_lockstep(self) -> None:
        """On frames newer than the last answered: ask if a chunk is due as of their stamp, then answer."""
        if len(self.frames) < len(self.cameras):
            return
        stamp = min(stamp for stamp, _ in self.frames.values())
        if stamp <= self.answered:
            return
        idle = not self.instruction or self.intervening
        if not idle and stamp >= self.schedule.next_due() - STAMP_TOLERANCE_S:  # as the sim decides to stop
            try:
                self._request(stamp)
            except NotReady as reason:
                self.waiting = str(reason)
        self.answered = stamp
        next_observation = NEVER_S if idle else max(self.schedule.next_due(), stamp + NEXT_FRAME_S)
        self.ready_pub.publish(TimeReference(header=Header(stamp=to_stamp(stamp)), time_ref=to_stamp(next_observation),
                                             source=self.get_fully_qualified_name()))

    def _time(self) -> float:
        """[s] the node's time: ROS time, or on sim time the newest joint_states stamp when that is later.

        /clock reaches the node through its executor, late and in bursts when the worker and the
        executor share a core; the robot's states carry the sim time they were measured at.
        """
        now = self.now()
        if self.use_sim_time and self.states:
            now = max(now, self.states[-1][0])
        return now

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
            if frame is None:
                continue
            try:
                self.frames[name] = to_seconds(frame.header.stamp), self.decode(frame)
            except VlaRosError as error:
                self._reject("frames", f"a frame of camera {name}: {error}")
        for msg in take_all(self.joint_states):
            try:
                positions, _ = self.reader.read(msg)
            except JointStateError as error:
                self._reject("joint_states", str(error))
                continue
            self.states.append((to_seconds(msg.header.stamp), positions))
        if self.odom is not None:
            for msg in take_all(self.odom):
                self.odometry.append((to_seconds(msg.header.stamp), msg))

    def _observation(self, now: float) -> Observation:
        stamps = {}
        for name in self.cameras:
            if name not in self.frames:
                raise NotReady(f"no frame from camera {name} yet")
            stamps[name] = self.frames[name][0]
            if now - stamps[name] > self.params.max_image_age_s:
                raise NotReady(f"camera {name} is stale: newest frame {now - stamps[name]:.3f} s old "
                               f"(max_image_age_s {self.params.max_image_age_s})")
        stamp = min(stamps.values())
        if stamp < self.fresh_after:
            raise NotReady("waiting for camera frames taken after the new instruction or the hand-back")
        executing = self.schedule.executing
        if executing is not None and stamp <= executing.stamp:
            raise NotReady("no frame newer than the last observation")
        positions = self._nearest(self.states, stamp, "joint_states")
        base_velocity = None
        if self.odom is not None:
            twist = self._nearest(self.odometry, stamp, "odom").twist.twist
            base_velocity = (twist.linear.x, twist.linear.y, twist.angular.z)
        wanted = self.policy.metadata.get("cameras", {})
        images = {}
        for name, (_, rgb) in self.frames.items():
            height, width, _ = wanted.get(name, rgb.shape)
            images[name] = resize(rgb, height, width)
        return Observation(images, self.io.state(positions, base_velocity), self.instruction, stamp)

    def _nearest(self, history: deque, stamp: float, topic: str):
        if not history:
            raise NotReady(f"no {topic} yet")
        # Newest first: stamps rise and the image is at most max_image_age_s old, so this stops after
        # a few entries instead of converting the whole history (1000 entries at 500 Hz).
        best_stamp, best = history[-1]
        for entry_stamp, value in reversed(history):
            if abs(entry_stamp - stamp) < abs(best_stamp - stamp):
                best_stamp, best = entry_stamp, value
            elif entry_stamp < stamp:
                break
        if abs(best_stamp - stamp) > self.params.max_state_skew_s:
            raise NotReady(f"no {topic} within {self.params.max_state_skew_s} s of the image stamp "
                           f"(nearest {best_stamp - stamp:+.3f} s)")
        return best

    def _request(self, now: float) -> None:
        ready = time.perf_counter()
        asked_under = self.epoch
        observation = self._observation(now)
        self.schedule.requested(now)
        prefix = None
        if self.policy.supports_prefix and self.schedule.executing is not None:
            dt = self.schedule.executing.dt
            prefix = self.schedule.prefix(observation.stamp, dt, now + self.schedule.delay)
        started = time.perf_counter()
        try:
            chunk = self.policy.infer(observation, prefix)
            actions = self._adapter(chunk.action_space).targets(chunk.actions, chunk.dt, observation.state)
        except PolicyError as error:
            self._failed(error)
            self.stopping.wait(self.params.retry_s)
            return
        model = time.perf_counter() - started
        if self.epoch != asked_under:
            return  # the instruction changed or a person took over while the model thought: not wanted
        end = observation.stamp + chunk.times[-1]
        if end <= self._time():
            self._failed(PolicyError(f"the chunk arrived after its last point ({model:.3f} s inference for "
                                     f"{chunk.times[-1]:.3f} s of actions): dropped"))
            return
        positions, base = self.io.split(actions)
        self.chunks.publish(to_chunk_msg(self.io.joints, chunk.times, positions, observation.stamp))
        if base is not None:
            self.base_chunks.publish(to_base_chunk_msg(self.io.base, chunk.times, base, observation.stamp))
        self.overhead.add(time.perf_counter() - ready - model)
        # In lockstep the sim waits while the model thinks: no robot time passes.
        self.schedule.answered(ActionChunk(actions, chunk.dt, chunk.stamp), 0.0 if self.params.lockstep else model)
        self.latency.add(model)
        self.age.add(now - observation.stamp)
        self.clock_lag.add(self.states[-1][0] - self.now())
        self.published += 1
        self.waiting = ""
        self.last_error = ""

    def _adapter(self, space: ActionSpace) -> ChunkAdapter:
        """The adapter of a chunk's action space to the embodiment layout (built once per space)."""
        if space not in self.adapters:
            self.adapters[space] = ChunkAdapter(self.embodiment, space)
        self.space = space.name
        return self.adapters[space]

    def _failed(self, error: PolicyError) -> None:
        self.errors += 1
        if str(error) != self.last_error:
            self.get_logger().warning(f"no chunk: {error}")
        self.last_error = str(error)

    def report(self) -> Report:
        now = time.monotonic()
        rate = (self.published - self.published_reported) / (now - self.last_report)
        self.published_reported, self.last_report = self.published, now
        if self.last_error:
            level, message = ERROR, f"no chunks: {self.last_error}"
        elif self.waiting:
            level, message = WARN, self.waiting
        else:
            level, message = OK, f"{rate:.1f} chunks/s"
        return Report(level, message, {
            "backend": self.params.policy,
            "backend_state": self.policy.state,
            "action_space": self.space or "none yet",
            "ik_clamped_steps": sum(a.clamped_steps for a in self.adapters.values()),
            "instruction": self.instruction,
            "chunks_per_s": f"{rate:.2f}",
            "chunks_published": self.published,
            "errors": self.errors,
            **{f"rejected_{what}": count for what, count in self.rejected.items()},
            "last_rejection": self.last_rejection,
            "inference_p50_ms": f"{self.latency.percentile(50) * 1e3:.1f}",
            "inference_p95_ms": f"{self.latency.percentile(95) * 1e3:.1f}",
            "delay_estimate_ms": f"{self.schedule.delay * 1e3:.1f}",
            "observation_age_ms": f"{self.age.percentile(50) * 1e3:.1f}",
            "clock_lag_p50_ms": f"{self.clock_lag.percentile(50) * 1e3:.1f}",
            "clock_lag_max_ms": f"{self.clock_lag.percentile(100) * 1e3:.1f}",
            "overhead_p50_ms": f"{self.overhead.percentile(50) * 1e3:.3f}",
            "overhead_p99_ms": f"{self.overhead.percentile(99) * 1e3:.3f}",
        })

    def on_close(self) -> None:
        self.policy.close()


def main(args=None):
    run(PolicyNode, args)


if __name__ == "__main__":
    main()
