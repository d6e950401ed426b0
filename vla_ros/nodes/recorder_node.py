"""`recorder_node`: records what the robot did, episode by episode, for the data flywheel.

Each episode is one rosbag2 bag (MCAP) in `out_dir`, in the layout `vla-ros collect` writes and
`vla-ros train` reads (vla_ros/data/bag.py): joint_states, the cameras, the controller's limited
targets (controller_node/commanded, stored as joint_commands), cmd_vel and odom for a mobile base,
the instruction, the language corrections given meanwhile (vla/correction) and an outcome label.

An episode starts with each message on vla/instruction (a new task, or the sim's next episode) and
ends with the next one, with `~/finish` (std_srvs/SetBool: data is the outcome, success or
failure), after `max_episode_s`, or when the node stops. Only `~/finish` labels it; the others
record success as null (training leaves such episodes out unless told to include failures).
Nothing is recorded before the first instruction.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool

from vla_ros import __version__
from vla_ros.data.bag import BagError, EpisodeWriter
from vla_ros.embodiment import load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.nodes.common import declare, run
from vla_ros.ros.diagnostics import ERROR, OK, WARN, diagnostic_array
from vla_ros.ros.image import ImageError, from_image_msg
from vla_ros.ros.time import to_seconds, to_stamp

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        self.embodiment = load_embodiment(declare(self, "embodiment", "arm7", "embodiment name or file", read_only=True))
        self.out_dir = Path(declare(self, "out_dir", "episodes", "directory the episode bags go to (made if missing)",
                                    read_only=True)).expanduser()
        self.max_episode_s = declare(self, "max_episode_s", 300.0, "an episode this long is ended (unlabelled) "
                                     "and the next one starts", read_only=True, low=1.0, high=86400.0)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VlaRosError(f"recorder_node: cannot make out_dir {self.out_dir}: {error.strerror}") from None
        self.writer: EpisodeWriter | None = None
        self.started = 0.0  # [s] stamp the current episode started at
        self.instruction = ""
        self.corrections: list[str] = []
        self.written: list[Path] = []
        self.messages = 0  # written in the current episode
        self.frames = dict.fromkeys(self.embodiment.cameras, 0)  # per camera, in the current episode
        self.problem = ""  # the last write that failed

        self.create_subscription(String, "vla/instruction", self._on_instruction, LATCHED)
        self.create_subscription(String, "vla/correction", self._on_correction, 10)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 100)
        self.create_subscription(JointState, "controller_node/commanded", self._on_commanded, 100)
        for name, camera in self.embodiment.cameras.items():
            self.create_subscription(Image, camera.topic, lambda msg, name=name: self._on_image(name, msg),
                                     qos_profile_sensor_data)
        base = self.embodiment.base
        if base is not None:
            self.create_subscription(Twist, base.command_topic, self._on_cmd_vel, 10)
            self.create_subscription(Odometry, "odom", self._on_odom, 10)
        self.create_service(SetBool, "~/finish", self._on_finish)
        self.diagnostics = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f"recording {self.embodiment.name} episodes to {self.out_dir}: each instruction starts one")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

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
        self.problem = ""
        self.writer.instruction(now, instruction)
        self.get_logger().info(f"episode {len(self.written) + 1}: {instruction!r} -> {self.writer.path}")

    def _finish(self, success: bool | None, finished_by: str, now: float) -> Path | None:
        """End the current episode with its outcome label; the bag's path (None without an episode)."""
        if self.writer is None:
            return None
        writer, self.writer = self.writer, None
        outcome = {"success": success, "finished_by": finished_by, "instruction": self.instruction,
                   "corrections": self.corrections, "seconds": round(now - self.started, 3)}
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
        now = self._now()
        self._finish(None, "next instruction", now)
        self._start(msg.data, now)

    def _on_correction(self, msg: String) -> None:
        now = self._now()
        self._record(lambda w: w.correction(now, msg.data), now)
        if self.writer is not None:  # after _record, which may have begun the next episode
            self.corrections.append(msg.data)

    def _on_finish(self, request, response):
        path = self._finish(bool(request.data), "~/finish", self._now())
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
        now = self._now()
        self._record(lambda w: w.base_command(now, np.array([msg.linear.x, msg.linear.y, msg.angular.z])), now)

    def _on_odom(self, msg: Odometry) -> None:
        stamp, twist = to_seconds(msg.header.stamp), msg.twist.twist
        velocity = np.array([twist.linear.x, twist.linear.y, twist.angular.z])
        self._record(lambda w: w.base_velocity(stamp, velocity, msg.child_frame_id), stamp)

    def _report(self) -> None:
        values = {"episodes_written": len(self.written), "recording": str(self.writer is not None).lower(),
                  "current_bag": str(self.writer.path) if self.writer else "",
                  "last_bag": str(self.written[-1]) if self.written else "", "messages": self.messages,
                  "out_dir": str(self.out_dir), "last_problem": self.problem,
                  **{f"frames_{camera}": count for camera, count in self.frames.items()}}
        if self.problem:
            level, message = ERROR, f"recording failed: {self.problem}"
        elif self.writer is not None:
            level, message = OK, f"recording episode {len(self.written) + 1}: {self.instruction!r}"
        else:
            level, message = WARN, "waiting for an instruction on vla/instruction"
        self.diagnostics.publish(diagnostic_array(to_stamp(self._now()), "vla_ros/recorder_node", level, message, values))

    def close(self) -> None:
        """The episode under way is kept, unlabelled."""
        self._finish(None, "recorder stopped", self._now())


def main(args=None):
    run(RecorderNode, args, graceful_stop=True)


if __name__ == "__main__":
    main()
