"""Drive a running sim_node over ROS: set the episode, reset, watch the task, keep camera frames.

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
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vla_ros.errors import VlaRosError
from vla_ros.ros.diagnostics import TOPIC, node_name, status_values
from vla_ros.ros.image import from_image_msg
from vla_ros.ros.qos import LATCHED, RELIABLE, SENSOR_DATA
from vla_ros.ros.services import RESEND_S, call_repeatable
from vla_ros.ros.task_status import SimStatus, StatusError, from_status_msg
from vla_ros.ros.time import to_seconds

SPIN_S = 0.05
ANSWER_TIMEOUT_S = 30.0
# Drawing a scene can take seconds (the humanoid's: 3-8 s on 2 cores, each candidate place checked
# by IK): a reset is sent again only after this long, or a slow one is done again and again, each
# repeat queued behind the last and its answer no longer awaited.
RESET_RESEND_S = 20.0
RESET_TIMEOUT_S = 60.0


class SimUnavailable(VlaRosError):
    """The sim node did not answer in time."""


@dataclass(frozen=True)
class EpisodeOutcome:
    """How an episode ended, as the sim judged it."""

    task: str
    seed: int
    instruction: str
    target: str  # the object the task is about, e.g. red_cube
    success: bool
    seconds: float  # sim time the episode ran
    progress: float
    detail: str


class SimClient:
    """A client node in its own context, talking to the sim (and a controller) in `namespace`."""

    def __init__(self, namespace: str = "", camera_topic: str | None = None, controller: bool = False,
                 pause_to_reset: bool = False):
        self.pause_to_reset = pause_to_reset  # reset sim and controller in a pause: both start at its first step
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.namespace = namespace.strip("/")
        self.node = rclpy.create_node("vla_ros_sim_client", namespace=f"/{self.namespace}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.status: SimStatus | None = None
        self.frames: list[tuple[float, np.ndarray]] = []  # (episode time [s], frame) kept this episode
        self.images_seen = 0
        self.camera_topic = camera_topic
        self.node.create_subscription(DiagnosticStatus, "sim/task_status", self._on_status, RELIABLE)
        if camera_topic is not None:
            self.node.create_subscription(Image, camera_topic, self._on_image, SENSOR_DATA)
        sim = node_name("sim_node", self.namespace)
        self.set_parameters = self.node.create_client(SetParameters, f"{sim}/set_parameters")
        self.reset_service = self.node.create_client(Trigger, f"{sim}/reset")
        self.controller_reset = (self.node.create_client(Trigger,
                                                         f"{node_name('controller_node', self.namespace)}/reset")
                                 if controller else None)
        self.keep_frame: Callable[[SimStatus], bool] = lambda status: False
        self.instruction_pub = self.node.create_publisher(String, "vla/instruction", LATCHED)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            self.status = from_status_msg(msg)
        except StatusError as error:
            raise SimUnavailable(f"the sim's task status does not parse: {error}") from None

    def _on_image(self, msg: Image) -> None:
        self.images_seen += 1
        status = self.status
        if status is None or to_seconds(msg.header.stamp) < status.episode_start - 1e-6:
            return  # rendered before the last reset
        if self.keep_frame(status):
            self.frames.append((status.episode_time, from_image_msg(msg).copy()))

    def watch_diagnostics(self, node: str) -> list[dict]:
        """Collect the statuses of `node` on /diagnostics from now on.

        `node` is its name in the client's namespace; the statuses are `status_values` dicts; the
        returned list fills as the client spins.
        """
        name = node_name(node, self.namespace)
        inbox: list[dict] = []

        def on_array(msg: DiagnosticArray) -> None:
            inbox.extend(status_values(status) for status in msg.status if status.name == name)

        self.node.create_subscription(DiagnosticArray, TOPIC, on_array, RELIABLE)
        return inbox

    def take_frames(self, count: int) -> list[tuple[float, np.ndarray]]:
        """`count` (episode time [s], frame) pairs spread evenly over those kept so far.

        First to last (none if none were kept); the client forgets them all.
        """
        kept, self.frames = self.frames, []
        return [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)] if kept else []

    def spin_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SimUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=SPIN_S)

    def wait_ready(self, timeout_s: float, command_topic: str) -> None:
        """Until the sim reports a task, something commands the robot, and the camera (if any) publishes."""
        self.spin_until(lambda: self.status is not None, timeout_s, "sim/task_status from the sim node")
        self.spin_until(lambda: self.reset_service.service_is_ready() and self.set_parameters.service_is_ready(),
                        timeout_s, "the sim node's services")
        if self.controller_reset is not None:
            self.spin_until(self.controller_reset.service_is_ready, timeout_s, self.controller_reset.srv_name)
        topic = self.node.resolve_topic_name(command_topic)
        self.spin_until(lambda: self.node.count_publishers(topic) > 0, timeout_s, f"a publisher on {topic}")
        if self.camera_topic is not None:  # the camera process starts last: wait for it too
            self.spin_until(lambda: self.images_seen > 0, timeout_s, f"an image on {self.camera_topic}")

    def _call(self, client, request, timeout_s: float = ANSWER_TIMEOUT_S, resend_s: float = RESEND_S):
        response = call_repeatable(client, request, lambda: self.executor.spin_once(timeout_sec=SPIN_S), timeout_s,
                                   resend_s)
        if response is None:
            raise SimUnavailable(f"timed out after {timeout_s:.0f} s waiting for an answer from {client.srv_name}")
        return response

    def start_episode(self, task: str, seed: int, perturb: str = "none") -> str:
        """Set the sim's task, seed and perturbation, reset it (and the controller), and return the instruction.

        With `pause_to_reset` both are reset while the sim is paused: a controller in step with the
        sim then restarts at the episode's first step, whenever the reset reached it.
        """
        parameters = [
            Parameter(name="task", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=task)),
            Parameter(name="seed", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed)),
            Parameter(name="perturb", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=perturb)),
        ]
        if self.pause_to_reset:
            parameters.append(_paused(True))
        answer = self._call(self.set_parameters, SetParameters.Request(parameters=parameters))
        refused = [r.reason for r in answer.results if not r.successful]
        if refused:
            raise VlaRosError(f"the sim refused task={task!r} seed={seed} perturb={perturb!r}: {'; '.join(refused)}")
        previous = None if self.status is None else self.status.episode
        response = self._call(self.reset_service, Trigger.Request(), RESET_TIMEOUT_S, RESET_RESEND_S)
        if not response.success:
            raise VlaRosError(f"the sim could not start task={task!r} seed={seed}: {response.message}")
        if self.controller_reset is not None:
            self._call(self.controller_reset, Trigger.Request())
        if self.pause_to_reset:
            self._call(self.set_parameters, SetParameters.Request(parameters=[_paused(False)]))
        self.spin_until(lambda: self.status is not None and self.status.episode != previous, ANSWER_TIMEOUT_S,
                        "the new episode's status")
        return response.message

    def run_episode(self, task: str, seed: int, seconds: float, frame_every_s: float = 0.0,
                    instruction: str | None = None,
                    on_status: Callable[[SimStatus], None] | None = None, perturb: str = "none") -> EpisodeOutcome:
        """Start an episode and watch it until success or `seconds` of sim time.

        `instruction` replaces the sim's wording of the task, `on_status` sees each task status, and
        a camera frame is kept every `frame_every_s` of sim time (0: none; `take_frames` hands them
        out); `perturb` names the episode's perturbation (vla_ros.sim.perturb).
        """
        given = self.start_episode(task, seed, perturb)
        if instruction is not None and instruction != given:
            self.instruction_pub.publish(String(data=instruction))
        instruction = instruction or given
        last_frame = [-np.inf]
        seen = [None]

        def done() -> bool:
            status = self.status
            if on_status is not None and status is not seen[0]:
                seen[0] = status
                on_status(status)
            return status.success or status.episode_time >= seconds

        def keep(status: SimStatus) -> bool:
            if frame_every_s and status.episode_time - last_frame[0] >= frame_every_s:
                last_frame[0] = status.episode_time
                return True
            return False

        self.frames = []
        self.keep_frame = keep
        try:
            self.spin_until(done, seconds * 20 + 60, f"the end of episode {task} seed {seed}")
        finally:
            self.keep_frame = lambda status: False
        status = self.status
        return EpisodeOutcome(status.task, seed, instruction, status.target, status.success, status.episode_time,
                              status.progress, status.detail)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _paused(value: bool) -> Parameter:
    return Parameter(name="paused", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))
