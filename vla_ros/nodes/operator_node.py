"""The scripted operator as a ROS 2 node: a stand-in for the person who watches the robot work.

A simulator tool, like expert_node: it reads joint_states and what only a simulator has
(sim/task_status, sim/objects), and acts through the topics a person uses (vla_ros.sim.operator):
`vla/intervention` to take over and hand back, `leader/joint_states` as a leader arm the task's
scripted expert moves (teleop_node with `input:=leader` turns it into the controller's teleop
chunks), `vla/correction` for what it says, and recorder_node's `~/finish` to label each episode.
Each new episode on sim/task_status starts a new watch. The status counts what the operator's time
went on: takeovers and their seconds, corrections and their words.
Run with `python -m vla_ros.nodes.operator_node --ros-args -p embodiment:=arm7 -p seconds:=10.0`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_latest
from vla_ros.ros.qos import LATCHED, RELIABLE
from vla_ros.ros.task_status import SimStatus, StatusError, from_status_msg
from vla_ros.ros.time import to_seconds
from vla_ros.sim.operator import Operator, OperatorConfig

REANNOUNCE_S = 1.0  # [s] a takeover under way is published again this often (teleop_node's gamepad does the same)


@dataclass(frozen=True)
class OperatorParams(OperatorConfig, RobotParams):
    """operator_node's parameters: when it steps in, the episodes' length, its randomness."""

    seconds: float = param(10.0, "an episode not done by this much sim time is labelled a failure [s]",
                           low=0.1, high=3600.0)
    rate_hz: float = param(30.0, "how often it looks and acts [Hz]", low=1.0, high=500.0)
    seed: int = param(0, "seeds the choice of words", low=0, high=2**31 - 1)
    recorder: str = param("recorder_node", "the recorder whose ~/finish labels episodes")


class OperatorNode(VlaNode):
    """The scripted operator (see the module docstring)."""

    params_type = OperatorParams

    def __init__(self):
        super().__init__("operator_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.kinematics = self.embodiment.kinematics
        self.rng = np.random.default_rng(self.params.seed)
        self.status: SimStatus | None = None
        self.operator: Operator | None = None
        self.cubes: dict[str, np.ndarray] = {}
        self.reader = JointStateReader(self.kinematics.joint_names)
        self.states = polled_subscription(self, JointState, "joint_states")
        self.create_subscription(DiagnosticStatus, "sim/task_status", self._on_status, RELIABLE)
        self.create_subscription(MarkerArray, "sim/objects", self._on_objects, RELIABLE)
        self.intervention = self.create_publisher(Bool, "vla/intervention", LATCHED)
        self.leader = self.create_publisher(JointState, "leader/joint_states", RELIABLE)
        self.correction = self.create_publisher(String, "vla/correction", RELIABLE)
        self.finish = self.create_client(SetBool, f"{self.params.recorder}/finish")
        self.totals = {"episodes": 0, "takeovers": 0, "takeover_s": 0.0, "corrections": 0, "correction_words": 0,
                       "labels": 0}
        self.driving_since: float | None = None
        self.announced = 0.0  # [s] episode time the takeover was last published
        self.start_loop(self._work, "operator")

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            status = from_status_msg(msg)
        except StatusError as error:
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
            return
        if self.status is None or status.episode != self.status.episode:
            if self.driving_since is not None:  # the episode ended under the operator's hands: hand back
                self.intervention.publish(Bool(data=False))
                self.driving_since = None
            self.cubes = {}
            self.operator = Operator(self.embodiment, status.task, self.params.seconds, self.params, self.rng)
            self.totals["episodes"] += 1
        self.status = status

    def _on_objects(self, msg: MarkerArray) -> None:
        status = self.status
        if status is None or not msg.markers or to_seconds(msg.markers[0].header.stamp) < status.episode_start:
            return
        self.cubes = {m.text.removesuffix("_cube"): np.array([m.pose.position.x, m.pose.position.y,
                                                               m.pose.position.z])
                      for m in msg.markers if m.ns == "cubes"}

    def _work(self) -> None:
        period = 1.0 / self.params.rate_hz
        while not self.stopping.wait(period):
            msg = take_latest(self.states)
            status, operator = self.status, self.operator
            if msg is None or status is None or operator is None or not self.cubes or \
                    to_seconds(msg.header.stamp) < status.episode_start:
                continue
            try:
                q, _ = self.reader.read(msg)
            except JointStateError as error:
                self.get_logger().error(f"ignoring joint_states: {error}", throttle_duration_sec=5.0)
                continue
            time = to_seconds(msg.header.stamp) - status.episode_start
            self._act(operator.tick(time, q, self.cubes, status.success), time)

    def _act(self, acts, time: float) -> None:
        if acts.intervention is None and self.driving_since is not None and time - self.announced >= REANNOUNCE_S:
            self.intervention.publish(Bool(data=True))  # again, as a person's deadman does: a lost edge heals
            self.announced = time
        if acts.intervention is not None:
            self.intervention.publish(Bool(data=acts.intervention))
            self.announced = time
            if acts.intervention:
                self.totals["takeovers"] += 1
                self.driving_since = time
                self.get_logger().info(f"takeover ({self.operator.took_over}) at {time:.2f} s")
            elif self.driving_since is not None:
                self.totals["takeover_s"] += time - self.driving_since
                self.driving_since = None
        if acts.say:
            self.correction.publish(String(data=acts.say))
            self.totals["corrections"] += 1
            self.totals["correction_words"] += len(acts.say.split())
        if acts.leader is not None:
            joints, positions = acts.leader  # a leader arm's positions; teleop_node estimates its velocities
            self.leader.publish(JointState(name=list(joints), position=positions.tolist()))
        if acts.label is not None:
            if self.finish.service_is_ready():
                self.finish.call_async(SetBool.Request(data=acts.label))
                self.totals["labels"] += 1
            else:
                self.get_logger().warning(f"no {self.params.recorder}/finish to label the episode",
                                          throttle_duration_sec=5.0)

    def report(self) -> Report:
        values = {key: (f"{value:.2f}" if isinstance(value, float) else value) for key, value in self.totals.items()}
        if self.status is None:
            return Report(WARN, "waiting for the sim's task on sim/task_status", values)
        values.update(task=self.status.task, episode=self.status.episode)
        state = "driving" if self.driving_since is not None else "watching"
        return Report(OK, f"{state}: {self.status.task} (episode {self.status.episode})", values)


def main(args=None):
    run(OperatorNode, args)


if __name__ == "__main__":
    main()
