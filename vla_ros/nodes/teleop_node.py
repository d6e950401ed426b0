"""`teleop_node`: a person takes the robot over from the policy, with a gamepad or a leader arm.

`input:=joy` reads `joy` (sensor_msgs/Joy from the standard joy node: a gamepad or a 3D mouse):
the mapped axes move the tool of one arm through the differential IK, two buttons close and
open its gripper, and holding the deadman button is the takeover: the node publishes
`vla/intervention` true when it is pressed and false when it is let go. `input:=leader` reads
`leader/joint_states` (sensor_msgs/JointState of a leader arm, joints mapped by name after
stripping `leader_prefix`); a leader has no deadman, so `vla/intervention` (from a pedal, a
person, or a scripted operator) starts and ends the takeover. vla_ros.control.teleop has the
mapping.

While an intervention lasts, every period the node turns the newest input and joint state into a
short chunk on `vla/teleop_chunk`, which controller_node tracks instead of the policy's with the
same limits and watchdogs. It publishes nothing when the input, the joint states or the
intervention are missing or do not fit: the controller then finishes the last chunk and holds,
and the diagnostics say why (ERROR while a person is meant to be driving).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from vla_ros.control.teleop import INPUTS, JoyMapping, JoyTeleop, LeaderTeleop, TeleopInputError, teleop_arm
from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import ERROR, OK, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_latest
from vla_ros.ros.qos import RELIABLE
from vla_ros.ros.trajectory import to_chunk_msg


@dataclass(frozen=True)
class TeleopParams(JoyMapping, RobotParams):
    """teleop_node's parameters: the input, its timing, and the gamepad's mapping."""

    input: str = param("joy", "joy: sensor_msgs/Joy on joy; leader: a leader arm's JointState on leader/joint_states",
                       choices=INPUTS)
    arm: str = param("", "joy: the arm group the gamepad drives (empty: the first arm with an ee_frame)")
    rate_hz: float = param(30.0, "teleop chunks per second while a person drives [Hz]", low=1.0, high=500.0)
    steps: int = param(5, "joy: points per chunk, one period apart (how far ahead the twist is followed)",
                       low=1, high=100)
    lead_s: float = param(0.1, "leader: the follower reaches the leader's pose this long after it is read [s]",
                          low=0.005, high=2.0)
    leader_prefix: str = param("", "leader: stripped from the leader's joint names before matching the follower's "
                                   "(e.g. leader_)")
    input_timeout_s: float = param(0.5, "no input for this long: no chunks (the controller holds) [s]",
                                   low=0.01, high=10.0)
    state_timeout_s: float = param(0.2, "joint_states older than this: no chunks (the controller holds) [s]",
                                   low=0.001, high=10.0)


class TeleopNode(VlaNode):
    """Gamepad or leader-arm teleoperation (see the module docstring)."""

    params_type = TeleopParams

    def __init__(self):
        super().__init__("teleop_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.period_s = 1.0 / self.params.rate_hz
        joy = self.params.input == "joy"
        if joy:
            self.teleop = JoyTeleop(self.embodiment, self.params, self.params.arm, self.period_s, self.params.steps)
            self.inputs = polled_subscription(self, Joy, "joy")
        else:
            teleop_arm(self.embodiment, self.params.arm)  # a named arm must exist, as for joy
            self.teleop = LeaderTeleop(self.embodiment, self.params.leader_prefix, self.params.lead_s)
            self.inputs = polled_subscription(self, JointState, "leader/joint_states")
        self.reader = JointStateReader(self.embodiment.kinematics.joint_names)
        self.states = polled_subscription(self, JointState, "joint_states")
        self.chunks = self.create_publisher(JointTrajectory, "vla/teleop_chunk", RELIABLE)
        self.intervention = self.create_publisher(Bool, "vla/intervention", RELIABLE)
        self.create_subscription(Bool, "vla/intervention", self._on_intervention, RELIABLE)

        self.intervening = False  # the last value on vla/intervention (ours included)
        self.driving = False  # intervening, as the worker last saw it
        self.deadman = False
        self.state: tuple[np.ndarray, float] | None = None  # (q in Kinematics order, taken at [s])
        self.input: tuple[object, float] | None = None  # (message, taken at [s])
        self.published = 0
        self.refused = 0
        self.problem = ""  # why no chunk goes out (ERROR on the diagnostics)
        self.input_problem = self.state_problem = ""
        self.start_loop(self._work, "teleop_worker")
        how = (f"deadman button {self.params.deadman_button}" if joy and self.params.deadman_button >= 0
               else "vla/intervention")
        self.get_logger().info(f"{self.embodiment.name}: {self.params.input} teleoperation at "
                               f"{self.params.rate_hz:g} Hz; {how} starts and ends a takeover")

    def _on_intervention(self, msg: Bool) -> None:
        self.intervening = bool(msg.data)

    def _work(self) -> None:
        while not self.stopping.wait(self.period_s):
            self._tick(self.now(), time.monotonic())

    def _tick(self, now: float, taken: float) -> None:
        """One period: read the newest input and state, follow the deadman, publish a chunk while driving."""
        msg = take_latest(self.states)
        if msg is not None:
            try:
                self.state = (self.reader.read(msg)[0], taken)
                self.state_problem = ""
            except JointStateError as error:
                self.state_problem = self._refused(f"joint_states: {error}")
        msg = take_latest(self.inputs)
        if msg is not None:
            self.input = (msg, taken)
            self.input_problem = self._check_input(msg)
        if self.intervening != self.driving:
            self.driving = self.intervening
            self.teleop.restart()
        self.problem = self.input_problem or self.state_problem
        if not self.driving or self.problem:
            return
        if self.state is None or taken - self.state[1] > self.params.state_timeout_s:
            self.problem = ("takeover without fresh joint_states (none for over "
                            f"{self.params.state_timeout_s:g} s): no teleop chunks, the controller holds")
            return
        if self.input is None or taken - self.input[1] > self.params.input_timeout_s:
            self.problem = (f"no {self.params.input} input for over {self.params.input_timeout_s:g} s: "
                            "the controller holds")
            return
        message = self.input[0]
        try:
            if isinstance(self.teleop, JoyTeleop):
                chunk = self.teleop.chunk(self.state[0], message.axes, message.buttons, now)
            else:
                chunk = self.teleop.chunk(message.name, message.position, message.velocity, now)
        except TeleopInputError as error:
            self.input_problem = self.problem = self._refused(str(error))
            return
        self.chunks.publish(to_chunk_msg(chunk.joints, chunk.times, chunk.positions, chunk.stamp, chunk.velocities))
        self.published += 1

    def _check_input(self, msg) -> str:
        """What is wrong with an input message ("" if nothing); a gamepad's deadman edges publish vla/intervention."""
        try:
            if isinstance(self.teleop, LeaderTeleop):
                self.teleop.joints(msg.name)
                return ""
            self.params.check_fits(len(msg.axes), len(msg.buttons))
        except TeleopInputError as error:
            return self._refused(str(error))
        if self.params.deadman_button >= 0:
            pressed = self.params.pressed(msg.buttons, "deadman_button")
            if pressed != self.deadman:
                self.deadman = self.intervening = pressed
                self.intervention.publish(Bool(data=pressed))
                self.get_logger().info("deadman pressed: a person takes over" if pressed
                                       else "deadman released: handing back to the policy")
        return ""

    def _refused(self, problem: str) -> str:
        """Count and log a refused input; returns the problem."""
        self.refused += 1
        self.get_logger().error(f"teleop input refused: {problem}", throttle_duration_sec=2.0)
        return problem

    def report(self) -> Report:
        values = {"input": self.params.input, "intervening": str(self.intervening).lower(),
                  "deadman": str(self.deadman).lower(), "chunks_published": self.published,
                  "inputs_refused": self.refused, "last_problem": self.problem}
        if self.problem:
            return Report(ERROR, self.problem, values)
        if self.driving:
            return Report(OK, f"a person drives {self.embodiment.name} with the {self.params.input}", values)
        return Report(OK, "ready: the policy drives until a takeover", values)


def main(args=None):
    run(TeleopNode, args)


if __name__ == "__main__":
    main()
