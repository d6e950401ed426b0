"""Drive a running sim_node over ROS: set the episode, reset, watch the task, collect frames.

With a controller_node in the graph, each sim reset also resets the controller: the sim teleports
the robot, and the controller must drop the last episode's chunk and hold the new pose.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vla_ros.errors import VlaRosError
from vla_ros.ros.image import from_image_msg
from vla_ros.ros.services import call_repeatable
from vla_ros.ros.time import to_seconds


TRANSIENT_LOCAL = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as vla/instruction is


class SimUnavailable(VlaRosError):
    """The sim node did not answer in time."""


@dataclass(frozen=True)
class EpisodeOutcome:
    task: str
    seed: int
    instruction: str
    target: str  # the object the task is about, e.g. red_cube
    success: bool
    seconds: float  # sim time the episode ran
    progress: float
    detail: str


class SimClient:
    """A client node in its own context, talking to `sim_node` (optionally in a namespace)."""

    def __init__(self, sim_node: str = "sim_node", camera_topic: str | None = None, controller_node: str | None = None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("vla_ros_sim_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.status: dict[str, str] = {}
        self.status_message = ""
        self.frames: list[np.ndarray] = []
        self.images_seen = 0
        self.camera_topic = camera_topic
        self.frame_labels: list[str] = []
        self.frame_times: list[float] = []  # [s] episode time of each kept frame
        self.node.create_subscription(DiagnosticStatus, "sim/task_status", self._on_status, 10)
        if camera_topic is not None:
            self.node.create_subscription(Image, camera_topic, self._on_image, qos_profile_sensor_data)
        self.set_parameters = self.node.create_client(SetParameters, f"{sim_node}/set_parameters")
        self.reset_service = self.node.create_client(Trigger, f"{sim_node}/reset")
        self.controller_reset = (self.node.create_client(Trigger, f"{controller_node}/reset")
                                 if controller_node else None)
        self.keep_frame: Callable[[], bool] = lambda: False
        self.instruction_pub = None  # made when an episode's instruction is given (run_episode)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        self.status = {kv.key: kv.value for kv in msg.values}
        self.status_message = msg.message

    def _on_image(self, msg: Image) -> None:
        self.images_seen += 1
        episode_start = float(self.status.get("stamp", 0.0)) - float(self.status.get("episode_time", 0.0))
        if to_seconds(msg.header.stamp) < episode_start - 1e-6:
            return  # rendered before the last reset
        if self.keep_frame():
            self.frames.append(from_image_msg(msg).copy())
            self.frame_times.append(float(self.status.get("episode_time", 0)))
            self.frame_labels.append(f"{self.status.get('task', '')} s{self.status.get('seed', '')} "
                                     f"t={float(self.status.get('episode_time', 0)):.1f}")

    def watch_diagnostics(self, name: str) -> list[dict]:
        """Collect the statuses called `name` on `diagnostics` from now on, as their values plus
        `level` (int) and `message`; the returned list fills as the client spins."""
        inbox: list[dict] = []

        def on_array(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name == name:
                    inbox.append({**{kv.key: kv.value for kv in status.values},
                                  "level": int.from_bytes(status.level, "little"), "message": status.message})

        self.node.create_subscription(DiagnosticArray, "diagnostics", on_array, 10)
        return inbox

    def take_frames(self, count: int) -> list[tuple[float, np.ndarray]]:
        """`count` (episode time [s], frame) pairs spread evenly over those kept so far, first to last
        (none if none were kept); the client forgets them all."""
        kept = list(zip(self.frame_times, self.frames))
        self.frames, self.frame_labels, self.frame_times = [], [], []
        return [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)] if kept else []

    def spin_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SimUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def wait_ready(self, timeout_s: float, command_topic: str) -> None:
        """Until the sim reports a task, something commands the robot, and the camera (if any) publishes."""
        self.spin_until(lambda: bool(self.status), timeout_s, "sim/task_status from the sim node")
        self.spin_until(lambda: self.reset_service.service_is_ready() and self.set_parameters.service_is_ready(),
                        timeout_s, "the sim node's services")
        if self.controller_reset is not None:
            self.spin_until(self.controller_reset.service_is_ready, timeout_s, self.controller_reset.srv_name)
        self.spin_until(lambda: self.node.count_publishers(command_topic) > 0, timeout_s,
                        f"a publisher on {command_topic}")
        if self.camera_topic is not None:  # the camera process starts last: wait for it too
            self.spin_until(lambda: self.images_seen > 0, timeout_s, f"an image on {self.camera_topic}")

    def _call(self, client, request, timeout_s: float):
        response = call_repeatable(client, request, lambda: self.executor.spin_once(timeout_sec=0.05), timeout_s)
        if response is None:
            raise SimUnavailable(f"timed out after {timeout_s:.0f} s waiting for an answer from {client.srv_name}")
        return response

    def start_episode(self, task: str, seed: int, timeout_s: float = 30.0) -> str:
        """Set the sim's task and seed, reset it (and the controller), and return the instruction."""
        request = SetParameters.Request(parameters=[
            Parameter(name="task", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=task)),
            Parameter(name="seed", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed)),
        ])
        results = self._call(self.set_parameters, request, timeout_s).results
        refused = [r.reason for r in results if not r.successful]
        if refused:
            raise VlaRosError(f"the sim refused task={task!r} seed={seed}: {'; '.join(refused)}")
        previous = self.status.get("episode")
        response = self._call(self.reset_service, Trigger.Request(), timeout_s)
        if not response.success:
            raise VlaRosError(f"the sim could not start task={task!r} seed={seed}: {response.message}")
        if self.controller_reset is not None:
            self._call(self.controller_reset, Trigger.Request(), timeout_s)
        self.spin_until(lambda: self.status.get("episode") != previous, timeout_s, "the new episode's status")
        return response.message

    def run_episode(self, task: str, seed: int, seconds: float, frame_every_s: float = 0.0,
                    instruction: str | None = None,
                    on_status: Callable[[dict[str, str], str], None] | None = None) -> EpisodeOutcome:
        """Start an episode and watch it until success or `seconds` of sim time; `instruction`
        replaces the sim's wording of the task, `on_status(values, message)` sees each task status."""
        given = self.start_episode(task, seed)
        if instruction is not None and instruction != given:
            if self.instruction_pub is None:
                self.instruction_pub = self.node.create_publisher(String, "vla/instruction", TRANSIENT_LOCAL)
            self.instruction_pub.publish(String(data=instruction))
        instruction = instruction or given
        last_frame = [-np.inf]
        seen = [None]

        def done() -> bool:
            if on_status is not None and self.status is not seen[0]:
                seen[0] = self.status
                on_status(self.status, self.status_message)
            return self.status.get("success") == "true" or float(self.status["episode_time"]) >= seconds

        def keep() -> bool:
            now = float(self.status.get("episode_time", 0.0))
            if frame_every_s and now - last_frame[0] >= frame_every_s:
                last_frame[0] = now
                return True
            return False

        self.keep_frame = keep
        try:
            self.spin_until(done, seconds * 20 + 60, f"the end of episode {task} seed {seed}")
        finally:
            self.keep_frame = lambda: False
        return EpisodeOutcome(self.status["task"], seed, instruction, self.status["target"],
                              self.status["success"] == "true", float(self.status["episode_time"]),
                              float(self.status["progress"]), self.status_message)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
