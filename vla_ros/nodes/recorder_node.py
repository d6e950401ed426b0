"""`recorder_node`: records what the robot did, episode by episode, for the data flywheel.

Each episode is one rosbag2 bag (MCAP) in `out_dir`, in the layout `vla-ros collect` writes and
`vla-ros train` reads (vla_ros/data/bag.py): joint_states, the cameras, the controller's limited
targets (controller_node/commanded, stored as joint_commands), cmd_vel and odom for a mobile base,
the instruction, the language corrections given meanwhile (vla/correction), when a person took over
and handed back (vla/intervention: while they drive, the commanded targets are theirs), where the
objects are when something reports them (sim/objects: the sim, or a perception node remapped onto
it; training relabels from them what the robot reached) and an outcome label, which lists the
corrections and the intervention segments too.

An episode starts with each message on vla/instruction (a new task, or the sim's next episode) and
ends with the next one, with `~/finish` (std_srvs/SetBool: data is the outcome, success or
failure), after `max_episode_s`, or when the node stops. Only `~/finish` labels it; the others
record success as null (training leaves such episodes out unless told to include failures).
Nothing is recorded before the first instruction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from vla_ros import __version__
from vla_ros.data.bag import OBJECTS, BagError, EpisodeWriter, segments
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.nodes.base import ERROR, OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.image import ImageError, from_image_msg
from vla_ros.ros.qos import LATCHED, RELIABLE, SENSOR_DATA
from vla_ros.ros.time import to_seconds

STATE_QUEUE = 100  # joint_states and commands at 500 Hz: a queue that rides out a slow write


@dataclass(frozen=True)
class RecorderParams(RobotParams):
    """recorder_node's parameters."""

    out_dir: str = param("episodes", "directory the episode bags go to (made if missing)")
    max_episode_s: float = param(300.0, "an episode this long is ended (unlabelled) and the next one starts [s]",
                                 low=1.0, high=86400.0)


class RecorderNode(VlaNode):
    """Each instruction starts an episode bag (see the module docstring)."""

    params_type = RecorderParams

    def __init__(self):
        super().__init__("recorder_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.out_dir = Path(self.params.out_dir).expanduser()
        self.max_episode_s = self.params.max_episode_s
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VlaRosError(f"recorder_node: cannot make out_dir {self.out_dir}: {error.strerror}") from None
        self.writer: EpisodeWriter | None = None
        self.started = 0.0  # [s] stamp the current episode started at
        self.instruction = ""
        self.corrections: list[str] = []
        self.intervening = False  # the last value on vla/intervention
        self.switches: list[tuple[float, bool]] = []  # (seconds into the episode, takeover?) of the current episode
        self.written: list[Path] = []
        self.messages = 0  # written in the current episode
        self.frames = dict.fromkeys(self.embodiment.cameras, 0)  # per camera, in the current episode
        self.commands = 0  # the controller's targets, in the current episode
        self.problem = ""  # the last write that failed

        self.create_subscription(String, "vla/instruction", self._on_instruction, LATCHED)
        self.create_subscription(String, "vla/correction", self._on_correction, RELIABLE)
        self.create_subscription(Bool, "vla/intervention", self._on_intervention, RELIABLE)
        self.create_subscription(MarkerArray, OBJECTS, self._on_objects, RELIABLE)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, STATE_QUEUE)
        self.create_subscription(JointState, "controller_node/commanded", self._on_commanded, STATE_QUEUE)
        for name, camera in self.embodiment.cameras.items():
            self.create_subscription(Image, camera.topic, lambda msg, name=name: self._on_image(name, msg), SENSOR_DATA)
        base = self.embodiment.base
        if base is not None:
            self.create_subscription(Twist, base.command_topic, self._on_cmd_vel, RELIABLE)
            self.create_subscription(Odometry, "odom", self._on_odom, RELIABLE)
        self.create_service(SetBool, "~/finish", self._on_finish)
        self.get_logger().info(f"recording {self.embodiment.name} episodes to {self.out_dir}: each instruction starts "
                               f"one")

    # -- episodes ------------------------------------------------------------------------------
    def _start(self, instruction: str, now: float) -> None:
        name = f"{self.embodiment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.written) + 1:04d}"
        info = {"embodiment": self.embodiment.name, "instruction": instruction,
                "recorded_by": f"vla_ros {__version__} recorder_node"}
        cameras = {name: camera.topic for name, camera in self.embodiment.cameras.items()}
        try:
            self.writer = EpisodeWriter(self.out_dir / name, cameras, self.embodiment.base is not None, info)
        except BagError as error:
            self._failed(str(error))
            return
        self.started, self.instruction, self.corrections, self.messages = now, instruction, [], 0
        self.frames = dict.fromkeys(self.frames, 0)
        self.commands = 0
        self.problem = ""
        self.writer.instruction(now, instruction)
        self.switches = []
        if self.intervening:  # an episode that starts while a person drives
            self._record(lambda w: w.intervention(now, True), now)
            self.switches.append((0.0, True))
        self.get_logger().info(f"episode {len(self.written) + 1}: {instruction!r} -> {self.writer.path}")

    def _finish(self, success: bool | None, finished_by: str, now: float) -> Path | None:
        """End the current episode with its outcome label; the bag's path (None without an episode)."""
        if self.writer is None:
            return None
        writer, self.writer = self.writer, None
        seconds = round(now - self.started, 3)
        driven = [[round(start, 3), round(end, 3)] for start, end in segments(self.switches, seconds)]
        outcome = {"success": success, "finished_by": finished_by, "instruction": self.instruction,
                   "corrections": self.corrections, "interventions": driven,
                   "intervention_s": round(sum(end - start for start, end in driven), 3), "seconds": seconds}
        try:
            writer.finish(now, outcome)
        except (BagError, OSError) as error:
            self._failed(f"{writer.path}: {error}")
            return None
        self.written.append(writer.path)
        label = {True: "success", False: "failure", None: "unlabelled"}[success]
        self.get_logger().info(f"episode {len(self.written)} {label} ({finished_by}), "
                               f"{self.messages} messages: {writer.path}")
        return writer.path

    def _record(self, write, stamp: float) -> None:
        """Write one message into the current episode (nothing before the first instruction)."""
        if self.writer is None:
            return
        if stamp - self.started > self.max_episode_s:
            self._finish(None, "max_episode_s", stamp)
            self._start(self.instruction, stamp)
            if self.writer is None:
                return
        try:
            write(self.writer)
            self.messages += 1
        except (BagError, OSError, ValueError) as error:
            self._failed(str(error))

    def _failed(self, problem: str) -> None:
        self.problem = problem
        self.get_logger().error(f"recording failed: {problem}", throttle_duration_sec=5.0)

    # -- callbacks -----------------------------------------------------------------------------
    def _on_instruction(self, msg: String) -> None:
        now = self.now()
        self._finish(None, "next instruction", now)
        self._start(msg.data, now)

    def _on_correction(self, msg: String) -> None:
        now = self.now()
        self._record(lambda w: w.correction(now, msg.data), now)
        if self.writer is not None:  # after _record, which may have begun the next episode
            self.corrections.append(msg.data)

    def _on_intervention(self, msg: Bool) -> None:
        active = bool(msg.data)
        if active == self.intervening:
            return
        self.intervening = active
        now = self.now()
        self._record(lambda w: w.intervention(now, active), now)
        if self.writer is not None:
            self.switches.append((now - self.started, active))

    def _on_objects(self, msg: MarkerArray) -> None:
        stamp = to_seconds(msg.markers[0].header.stamp) if msg.markers else 0.0
        stamp = stamp if stamp > 0 else self.now()  # an unstamped report: when it came
        data = serialize_message(msg)
        self._record(lambda w: w.serialized(OBJECTS, "visualization_msgs/msg/MarkerArray", stamp, data), stamp)

    def _on_finish(self, request, response):
        path = self._finish(bool(request.data), "~/finish", self.now())
        response.success = path is not None
        response.message = f"recorded {path}" if path else (
            f"no episode to label: {self.problem or 'none started (waiting for an instruction on vla/instruction)'}")
        return response

    def _on_joint_states(self, msg: JointState) -> None:
        stamp = to_seconds(msg.header.stamp)
        self._record(lambda w: w.joint_state(stamp, msg.name, msg.position, msg.velocity, msg.effort), stamp)

    def _on_commanded(self, msg: JointState) -> None:
        stamp = to_seconds(msg.header.stamp)
        self._record(lambda w: w.commands(stamp, msg.name, msg.position, msg.velocity), stamp)
        self.commands += self.writer is not None

    def _on_image(self, camera: str, msg: Image) -> None:
        stamp = to_seconds(msg.header.stamp)
        try:
            rgb = from_image_msg(msg)
        except ImageError as error:
            self._failed(f"{self.embodiment.cameras[camera].topic}: {error}")
            return
        self._record(lambda w: w.image(camera, stamp, rgb, msg.header.frame_id), stamp)
        self.frames[camera] += self.writer is not None

    def _on_cmd_vel(self, msg: Twist) -> None:
        now = self.now()
        self._record(lambda w: w.base_command(now, np.array([msg.linear.x, msg.linear.y, msg.angular.z])), now)

    def _on_odom(self, msg: Odometry) -> None:
        stamp, twist = to_seconds(msg.header.stamp), msg.twist.twist
        velocity = np.array([twist.linear.x, twist.linear.y, twist.angular.z])
        self._record(lambda w: w.base_velocity(stamp, velocity, msg.child_frame_id), stamp)

    def report(self) -> Report:
        values = {"episodes_written": len(self.written), "recording": str(self.writer is not None).lower(),
                  "current_bag": str(self.writer.path) if self.writer else "",
                  "last_bag": str(self.written[-1]) if self.written else "", "messages": self.messages,
                  "out_dir": str(self.out_dir), "last_problem": self.problem, "commands": self.commands,
                  "intervening": str(self.intervening).lower(),
                  **{f"frames_{camera}": count for camera, count in self.frames.items()}}
        if self.problem:
            return Report(ERROR, f"recording failed: {self.problem}", values)
        if self.writer is not None:
            return Report(OK, f"recording episode {len(self.written) + 1}: {self.instruction!r}", values)
        return Report(WARN, "waiting for an instruction on vla/instruction", values)

    def on_close(self) -> None:
        """The episode under way is kept, unlabelled."""
        self._finish(None, "recorder stopped", self.now())


def main(args=None):
    run(RecorderNode, args)


if __name__ == "__main__":
    main()
