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
and the diagnostics say why (ERROR). A gamepad that goes quiet with the deadman held leaves the
takeover on, the arm held: only a person hands back. While the deadman is held its takeover is
published again every second, so a node that starts late learns of it.
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
from vla_ros.errors import VlaRosError
from vla_ros.nodes.base import ERROR, OK, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.joint_state import JointStateError, JointStateReader
from vla_ros.ros.polled import polled_subscription, take_latest
from vla_ros.ros.qos import LATCHED, RELIABLE
from vla_ros.ros.time import to_seconds
from vla_ros.ros.trajectory import to_chunk_msg

REANNOUNCE_S = 1.0  # [s] while the deadman is held, its takeover is published again this often (late joiners)


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
    catch_up_speed: float = param(0.5, "leader: a follower further from the leader than lead_s allows goes there at "
                                       "this speed, arriving at rest (a takeover with the arms apart) [rad/s | m/s]",
                                  low=0.01, high=10.0)
    leader_prefix: str = param("", "leader: stripped from the leader's joint names before matching the follower's "
                                   "(e.g. leader_)")
    input_timeout_s: float = param(0.5, "no input for this long: no chunks (the controller holds) [s]",
                                   low=0.01, high=10.0)
    state_timeout_s: float = param(0.2, "joint_states older than this: no chunks (the controller holds) [s]",
                                   low=0.001, high=10.0)


class _JoyInput:
    """A gamepad on `joy`: each period, the held stick moves the tool on."""

    msg_type, topic, every_period = Joy, "joy", True

    def __init__(self, embodiment, params: TeleopParams, period_s: float):
        self.params = params
        self.teleop = JoyTeleop(embodiment, params, params.arm, period_s, params.steps)

    def check(self, msg: Joy) -> None:
        self.params.check_fits(msg.axes, msg.buttons)

    def chunk(self, msg: Joy, q_full: np.ndarray, now: float):
        return self.teleop.chunk(q_full, msg.axes, msg.buttons, now)


class _LeaderInput:
    """A leader arm on `leader/joint_states`: each message is a target."""

    msg_type, topic, every_period = JointState, "leader/joint_states", False

    def __init__(self, embodiment, params: TeleopParams, period_s: float):
        teleop_arm(embodiment, params.arm)  # a named arm must exist, as for joy
        self.teleop = LeaderTeleop(embodiment, params.leader_prefix, params.lead_s, params.catch_up_speed)

    def check(self, msg: JointState) -> None:
        self.teleop.joints(msg.name)

    def chunk(self, msg: JointState, q_full: np.ndarray, now: float):
        stamp = to_seconds(msg.header.stamp)
        return self.teleop.chunk(msg.name, msg.position, msg.velocity, now, q_full, stamp if stamp > 0 else now)


INPUT_TYPES = {"joy": _JoyInput, "leader": _LeaderInput}


class TeleopNode(VlaNode):
    """Gamepad or leader-arm teleoperation (see the module docstring)."""

    params_type = TeleopParams

    def __init__(self):
        super().__init__("teleop_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.period_s = 1.0 / self.params.rate_hz
        self.source = INPUT_TYPES[self.params.input](self.embodiment, self.params, self.period_s)
        self.deadman_drives = self.params.input == "joy" and self.params.deadman_button >= 0
        self.inputs = polled_subscription(self, self.source.msg_type, self.source.topic)
        self.reader = JointStateReader(self.embodiment.kinematics.joint_names)
        self.states = polled_subscription(self, JointState, "joint_states")
        self.chunks = self.create_publisher(JointTrajectory, "vla/teleop_chunk", RELIABLE)
        self.intervention = self.create_publisher(Bool, "vla/intervention", LATCHED)
        self.create_subscription(Bool, "vla/intervention", self._on_intervention, RELIABLE)

        self.intervening = False  # the last value on vla/intervention (ours included)
        self.driving = False  # a person drives through this node, as the worker last saw it
        self.deadman = False
        self.deadman_pressed = False  # in the newest Joy message
        self.announced = -np.inf  # [s] (monotonic) the deadman's takeover was last published
        self.state: tuple[np.ndarray, float] | None = None  # (q in Kinematics order, taken at [s])
        self.input: tuple[object, float] | None = None  # (message, taken at [s])
        self.fresh_input = False  # a message not yet turned into a chunk
        self.published = 0
        self.refused = 0
        self.problem = ""  # why no chunk goes out (ERROR on the diagnostics)
        self.input_problem = self.state_problem = ""
        self.start_loop(self._work, "teleop_worker")
        how = f"deadman button {self.params.deadman_button}" if self.deadman_drives else "vla/intervention"
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
            self.input, self.fresh_input = (msg, taken), True
            self.input_problem = self._check_input(msg)
        stale = self.input is None or taken - self.input[1] > self.params.input_timeout_s
        if self.deadman_drives:
            self._follow_deadman(taken)
        driving = self.intervening and (self.deadman or not self.deadman_drives)
        if driving != self.driving:
            self.driving = driving
            self.source.teleop.restart()
        self.problem = self.input_problem or self.state_problem
        if not self.driving or self.problem:
            return
        if self.state is None or taken - self.state[1] > self.params.state_timeout_s:
            self.problem = ("takeover without fresh joint_states (none for over "
                            f"{self.params.state_timeout_s:g} s): no teleop chunks, the controller holds")
            return
        if stale:
            self.problem = (f"no {self.params.input} input for over {self.params.input_timeout_s:g} s: "
                            "the controller holds")
            return
        if not (self.fresh_input or self.source.every_period):
            return
        try:
            chunk = self.source.chunk(self.input[0], self.state[0], now)
        except VlaRosError as error:  # a message that fits the mapping but not the robot or the moment
            self.input_problem = self.problem = self._refused(str(error))
            return
        self.fresh_input = False
        self.chunks.publish(to_chunk_msg(chunk.joints, chunk.times, chunk.positions, chunk.stamp, chunk.velocities))
        self.published += 1

    def _check_input(self, msg) -> str:
        """What is wrong with an input message ("" if nothing); a gamepad's deadman is read if it can be."""
        if self.deadman_drives and len(msg.buttons) > self.params.deadman_button:
            self.deadman_pressed = bool(msg.buttons[self.params.deadman_button])
        try:
            self.source.check(msg)
        except TeleopInputError as error:
            return self._refused(str(error))
        return ""

    def _follow_deadman(self, taken: float) -> None:
        """Publish vla/intervention on the deadman's edges, and again each second while it is held.

        A gamepad that goes quiet with the deadman held keeps the takeover (the controller holds the
        arm, the status says why): handing back to the policy is a person's decision.
        """
        pressed = self.deadman_pressed
        if pressed != self.deadman:
            self.deadman = pressed
            self.get_logger().info("deadman pressed: a person takes over" if pressed
                                   else "deadman released: handing back to the policy")
        elif not pressed or taken - self.announced < REANNOUNCE_S:
            return
        self.intervening = pressed
        self.announced = taken
        self.intervention.publish(Bool(data=pressed))

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
