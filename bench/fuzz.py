"""Hostile input at volume: malformed messages to the running nodes and the policy server, every outcome counted.

The graph is `vla-ros up mobile_manipulator --sim --policy hold --teleop joy`: sim_node standing in for
the robot, controller_node, policy_node and teleop_node (a gamepad). For every input (INPUTS) and each of
its faults, hypothesis draws messages (a fixed seed: the same messages every run), `--messages` per input
shared evenly by its faults; they are published over DDS as fast as they are drawn (or at the pace a
node that reads only the newest once a period can see them). Then:
- every node still runs and reports;
- no command left the limits (LimitWatch): every controller_node/commanded within the position and
  velocity limits, its velocity changing by at most the acceleration limit over the periods between two,
  every cmd_vel within the base's limits;
- what a node refused is counted on its diagnostics: the table has the messages sent, the refusals
  counted and the reason given. A node reads the newest camera frame and joint state only, so frames and
  states superseded before they were read are neither used nor counted.
The policy server (vla_ros.policy.server) is fuzzed in-process (SERVER_FAULTS): every message answered
with a one-line error or, past the size limit, that connection closed; another client is served throughout.

Writes JSON (per input and fault: sent, counted, reason, outcome), the matrix as markdown (`--table`)
and a PNG. Run with `vla-ros bench fuzz [--messages N] [--seed S] [--json OUT] [--png OUT]
[--table OUT]` (needs the test extra: hypothesis).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Transform, Twist
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import (
    JointTrajectory,
    JointTrajectoryPoint,
    MultiDOFJointTrajectory,
    MultiDOFJointTrajectoryPoint,
)

from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.ros.diagnostics import TOPIC, node_name, status_values
from vla_ros.ros.polled import polled_subscription, take_all
from vla_ros.ros.qos import LATCHED, RELIABLE
from vla_ros.ros.time import to_seconds, to_stamp
from vla_ros.ros.trajectory import MAX_POINTS, to_duration

BODY = "mobile_manipulator"
DIAGNOSTICS_PERIOD_S = 0.05  # the graph's, so counts settle quickly after each fault
TELEOP_RATE_HZ = 100.0  # teleop_node reads the newest Joy once a period: the fuzzer paces Joy to it
TOLERANCE = 1e-6  # [rad, rad/s] numerical slack of the limit checks
RESTART_GAP_PERIODS = 10  # the controller sent no command for this long: it held without feedback (stale)
HOSTILE_TEXT = st.text(min_size=1, max_size=40)
INSTRUCTION = "reach the red cube"  # restored after the instruction's faults


@dataclass
class Shot:
    """One message to send: its header stamped `offset` [s] from the send time when it has one."""

    message: object
    offset: float | None = 0.0


# --- the inputs and their faults -----------------------------------------------------------------------------


def _bulk(draw, shape: tuple[int, ...], bound: float) -> list:
    """Uniform values in [-bound, bound] as nested lists: hypothesis draws the seed, numpy the numbers.

    Hypothesis chooses every message's structure and fault; drawing hundreds of plain numbers one by
    one through it would make ten thousand messages take an hour.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.uniform(-bound, bound, shape).tolist()


@functools.cache
def _points_at_rest(joints: int) -> list[JointTrajectoryPoint]:
    """MAX_POINTS + 100 points 1 ms apart, built once: a chunk of too many points is a slice of them.

    Building ten thousand points in Python for each of thousands of messages would take the
    benchmark most of an hour; the node sees the same message either way.
    """
    return [JointTrajectoryPoint(positions=[0.0] * joints, time_from_start=to_duration(1e-3 * (k + 1)))
            for k in range(MAX_POINTS + 100)]


@functools.cache
def _base_points_at_rest() -> list[MultiDOFJointTrajectoryPoint]:
    """As _points_at_rest, for a base chunk."""
    return [MultiDOFJointTrajectoryPoint(transforms=[Transform()], velocities=[Twist()],
                                         time_from_start=to_duration(1e-3 * (k + 1))) for k in range(MAX_POINTS + 50)]


def _trajectory(joints: list[str], fault: str):
    """JointTrajectory messages (vla/action_chunk, vla/teleop_chunk) with `fault`."""

    @st.composite
    def draw(draw) -> Shot:
        names = list(joints)
        count = draw(st.integers(2, 30))
        step = draw(st.floats(0.001, 0.2))
        times = [step * (k + 1) for k in range(count)]
        rows = _bulk(draw, (count, len(names)), 50.0)
        velocities = None
        offset = 0.0
        if fault == "NaN/Inf":
            rows[draw(st.integers(0, count - 1))][draw(st.integers(0, len(names) - 1))] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf]))
        elif fault == "too many points":
            count = draw(st.integers(MAX_POINTS + 1, MAX_POINTS + 100))
            return Shot(JointTrajectory(joint_names=names, points=_points_at_rest(len(names))[:count]), offset)
        elif fault == "no points":
            times, rows = [], []
        elif fault == "unknown joint":
            names[draw(st.integers(0, len(names) - 1))] = draw(HOSTILE_TEXT.filter(lambda n: n not in joints))
        elif fault == "duplicate joint":
            first, second = draw(st.lists(st.integers(0, len(names) - 1), min_size=2, max_size=2, unique=True))
            names[second] = names[first]
        elif fault == "times not increasing":
            times = draw(st.permutations(times).filter(lambda t: any(b <= a for a, b in zip(t, t[1:]))))
        elif fault == "negative times":
            times[0] = -draw(st.floats(1e-3, 1e6))
        elif fault == "stamp far ahead":
            offset = draw(st.floats(10.0, 1e8))
        elif fault == "stamp far behind":
            offset = -draw(st.floats(10.0, 1e9))
        elif fault == "rows of unequal length":
            rows[draw(st.integers(0, count - 1))].pop()
        elif fault == "velocities of another shape":
            velocities = [[0.0] * (len(names) + 1)] * count
        message = JointTrajectory(joint_names=names)
        for k, (time_from_start, row) in enumerate(zip(times, rows)):
            point = JointTrajectoryPoint(positions=row, time_from_start=to_duration(time_from_start))
            if velocities is not None:
                point.velocities = velocities[k]
            message.points.append(point)
        return Shot(message, offset)

    return draw()


def _base_trajectory(base: str, fault: str):
    """MultiDOFJointTrajectory messages (vla/base_chunk) with `fault`."""

    @st.composite
    def draw(draw) -> Shot:
        count = draw(st.integers(2, 20))
        times = [0.05 * (k + 1) for k in range(count)]
        twists = [tuple(row) for row in _bulk(draw, (count, 3), 20.0)]
        offset, missing = 0.0, None
        if fault == "NaN/Inf":
            k = draw(st.integers(0, count - 1))
            twists[k] = (draw(st.sampled_from([math.nan, math.inf, -math.inf])), *twists[k][1:])
        elif fault == "too many points":
            count = draw(st.integers(MAX_POINTS + 1, MAX_POINTS + 50))
            return Shot(MultiDOFJointTrajectory(joint_names=[base], points=_base_points_at_rest()[:count]), offset)
        elif fault == "no points":
            times, twists = [], []
        elif fault == "point without velocity":
            missing = draw(st.integers(0, count - 1))
        elif fault == "times not increasing":
            times = times[::-1]
        elif fault == "stamp far behind":
            offset = -draw(st.floats(10.0, 1e9))
        message = MultiDOFJointTrajectory(joint_names=[base])
        for k, (time_from_start, (vx, vy, wz)) in enumerate(zip(times, twists)):
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.angular.z = vx, vy, wz
            message.points.append(MultiDOFJointTrajectoryPoint(
                transforms=[Transform()], velocities=[] if k == missing else [twist],
                time_from_start=to_duration(time_from_start)))
        return Shot(message, offset)

    return draw()


def _joint_state(joints: list[str], fault: str):
    """JointState messages (joint_states) with `fault`."""

    @st.composite
    def draw(draw) -> Shot:
        names = list(joints)
        positions = _bulk(draw, (len(names),), 3.0)
        velocities = [0.0] * len(names)
        if fault == "lengths disagree":
            positions = positions[:draw(st.integers(0, len(names) - 1))]
        elif fault == "NaN/Inf":
            positions[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        elif fault == "duplicate names":
            names.append(draw(st.sampled_from(joints)))
            positions.append(0.0)
            velocities.append(0.0)
        elif fault == "joints missing":
            keep = draw(st.lists(st.sampled_from(range(len(joints))), max_size=len(joints) - 1, unique=True))
            names, positions, velocities = ([values[i] for i in keep] for values in (names, positions, velocities))
        elif fault == "no velocities":
            velocities = []
        return Shot(JointState(name=names, position=positions, velocity=velocities))

    return draw()


def _image(fault: str):
    """Image messages (a camera's image_raw) with `fault`."""

    @st.composite
    def draw(draw) -> Shot:
        width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
        encoding, step = "rgb8", 3 * width
        size = step * height
        if fault == "unknown encoding":
            encoding = draw(st.one_of(st.sampled_from(["rgba16", "yuv422", "bayer_rggb8", "32FC1", ""]),
                                      HOSTILE_TEXT))
        elif fault == "step too small":
            step = draw(st.integers(0, 3 * width - 1))
        elif fault == "data shorter than declared":
            size = draw(st.integers(0, size - 1))
        elif fault == "huge declared size":
            width, height = draw(st.integers(1 << 16, (1 << 31) - 1)), draw(st.integers(1 << 16, (1 << 31) - 1))
            step, size = min(3 * width, (1 << 32) - 1), 64
        elif fault == "empty":
            width, height, step, size = draw(st.sampled_from([(0, 0), (0, 8), (8, 0)])) + (0, 0)
        data = bytes(draw(st.integers(0, 255)) for _ in range(4)) * (size // 4) + bytes(size % 4)
        return Shot(Image(height=height, width=width, encoding=encoding, step=step, data=data))

    return draw()


def _instruction(fault: str):
    """String messages (vla/instruction) with `fault`; non-UTF-8 text goes out as raw serialized bytes."""
    if fault == "blank":
        return st.text(alphabet=" \t\r\n", max_size=50).map(lambda text: Shot(String(data=text), None))
    if fault == "1 MB":
        return st.integers(1 << 20, (1 << 20) + 100_000).map(lambda n: Shot(String(data="reach " * (n // 6)), None))
    if fault == "not UTF-8":
        def raw(junk: bytes) -> Shot:
            good = serialize_message(String(data="reach the " + "x" * len(junk)))
            start = good.index(b"x")
            return Shot(good[:start] + junk + good[start + len(junk):], None)
        return st.binary(min_size=1, max_size=40).filter(lambda b: not _utf8(b)).map(raw)
    return HOSTILE_TEXT.map(lambda text: Shot(String(data=text), None))  # any text at all: it is words


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _flapping():
    """Bool messages (vla/estop, vla/intervention): a random sequence, delivered as fast as drawn."""
    # The integer only keeps hypothesis drawing: booleans alone are two examples.
    return st.tuples(st.booleans(), st.integers()).map(lambda drawn: Shot(Bool(data=drawn[0]), None))


def _joy(fault: str):
    """Joy messages (joy) with `fault`: teleop_node maps axes 0-5, the deadman is button 4."""

    @st.composite
    def draw(draw) -> Shot:
        axes = draw(st.lists(st.floats(-1, 1), min_size=6, max_size=8))
        buttons = draw(st.lists(st.integers(0, 1), min_size=8, max_size=12))
        if fault == "fewer axes than mapped":
            axes = axes[:draw(st.integers(0, 5))]
        elif fault == "fewer buttons than mapped":
            buttons = buttons[:draw(st.integers(0, 4))]
        elif fault == "NaN/Inf axes":
            axes[draw(st.integers(0, 5))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        elif fault == "out-of-range axes":
            axes = draw(st.lists(st.floats(-1e9, 1e9), min_size=6, max_size=8))
        elif fault == "driving (deadman held)":
            buttons[4] = 1
        return Shot(Joy(axes=axes, buttons=buttons))

    return draw()


@dataclass(frozen=True)
class Input:
    """An input of the graph: its topic and type, and where its refusals are counted (node, counter, reason).

    `after` is sent once a fault's messages are out, so the next finds the graph as it was: a gamepad let go,
    a hand-back, a valid instruction; `reset` releases an e-stop afterwards. `pace_s`: the least time between
    two messages, for a node that reads only the newest once a period.
    """

    topic: str
    msg_type: type
    faults: dict[str, Callable[[], object]]
    counters: tuple[tuple[str, str, str], ...]
    qos: object = RELIABLE
    after: object = None
    reset: bool = False
    pace_s: float = 0.0


def inputs(embodiment: Embodiment) -> dict[str, Input]:
    """Every fuzzed input of `embodiment`'s graph."""
    io = EmbodimentIO(embodiment)
    commanded = list(io.joints)
    measured = list(embodiment.kinematics.joint_names)
    camera = next(iter(embodiment.cameras.values()))
    chunk = ("controller_node", "chunks_rejected", "last_rejection")
    pace = 0.005  # a chunk of MAX_POINTS takes the controller's executor milliseconds to decode
    chunk_faults = ["valid, far targets", "NaN/Inf", "too many points", "no points", "unknown joint",
                    "duplicate joint", "times not increasing", "negative times", "stamp far ahead",
                    "stamp far behind", "rows of unequal length", "velocities of another shape"]
    found = {
        **{name: Input(f"vla/{name}", JointTrajectory, {f: (lambda f=f: _trajectory(commanded, f))
                                                         for f in chunk_faults}, (chunk,), pace_s=pace)
           for name in ("action_chunk", "teleop_chunk")},
        "joint_states": Input("joint_states", JointState, {
            f: (lambda f=f: _joint_state(measured, f))
            for f in ["lengths disagree", "NaN/Inf", "duplicate names", "joints missing", "no velocities"]},
            (("controller_node", "bad_joint_states", "message"),
             ("policy_node", "rejected_joint_states", "last_rejection")), pace_s=2.0 / embodiment.control_rate_hz),
        "image": Input(camera.topic, Image, {
            f: (lambda f=f: _image(f))
            for f in ["unknown encoding", "step too small", "data shorter than declared", "huge declared size",
                      "empty"]}, (("policy_node", "rejected_frames", "last_rejection"),), pace_s=0.01),
        "instruction": Input("vla/instruction", String, {
            f: (lambda f=f: _instruction(f)) for f in ["any text", "blank", "1 MB", "not UTF-8"]},
            (("policy_node", "rejected_instructions", "last_rejection"),), LATCHED,
            after=String(data=INSTRUCTION), pace_s=0.02),
        "joy": Input("joy", Joy, {
            f: (lambda f=f: _joy(f))
            for f in ["fewer axes than mapped", "fewer buttons than mapped", "NaN/Inf axes", "out-of-range axes",
                      "driving (deadman held)"]}, (("teleop_node", "inputs_refused", "last_problem"),),
            after=Joy(axes=[0.0] * 6, buttons=[0] * 8), pace_s=1.5 / TELEOP_RATE_HZ),
        "intervention": Input("vla/intervention", Bool, {"flapping": _flapping},
                              (("controller_node", "interventions", "message"),), after=Bool(data=False)),
        "estop": Input("vla/estop", Bool, {"flapping": _flapping},
                       (("controller_node", "state", "message"),), reset=True),
    }
    if io.base:
        found["base_chunk"] = Input("vla/base_chunk", MultiDOFJointTrajectory, {
            f: (lambda f=f: _base_trajectory(io.base, f))
            for f in ["valid, fast", "NaN/Inf", "too many points", "no points", "point without velocity",
                      "times not increasing", "stamp far behind"]}, (chunk,), pace_s=pace)
    return found


def each(strategy, count: int, seed: int, use: Callable[[object], None]) -> int:
    """Give `use` each of `count` values of `strategy` as it is drawn; how many were used.

    Fewer if the strategy has fewer; the same ones for the same seed. One at a time: a thousand
    chunks of 10000 points do not fit in memory.
    """
    used = [0]

    @seeded(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value) -> None:
        if used[0] < count:
            use(value)
            used[0] += 1

    run()
    return used[0]


# --- watching the graph ----------------------------------------------------------------------------------------


class LimitWatch:
    """Every command the controller sends, checked against the embodiment's limits as it arrives.

    A command at rest (every velocity within what the acceleration limit allows since the last command)
    whose position moved further from the last than the velocity limits allow, or the first after the
    controller sent none for
    RESTART_GAP_PERIODS (its joint_states went stale), is a restart: the controller's reaction to a following
    error or to states coming back is to drop the chunk and start again at rest from where the joints are
    measured. Its velocity change is by design and counted in `restarts`, not as a violation; its position
    and velocity are checked as any command's. A jump while moving is a violation.
    """

    def __init__(self, node, embodiment: Embodiment):
        groups = embodiment.commanded_groups
        names = [j for g in groups for j in g.joints]
        self.lower, self.upper, self.vmax, self.amax = (
            dict(zip(names, np.concatenate([getattr(g, a) for g in groups])))
            for a in ("lower", "upper", "velocity_limit", "accel_limit"))
        self.base = embodiment.base
        self.period_s = 1.0 / embodiment.control_rate_hz  # the controller limits each period's velocity change
        self.commanded = polled_subscription(node, JointState, "controller_node/commanded", 5000)
        self.cmd_vel = polled_subscription(node, Twist, self.base.command_topic, 5000) if self.base else None
        self.commands = self.restarts = 0
        self.during = ""  # what is being sent, for the violations' words
        self.violations: list[str] = []
        self._previous: tuple[float, dict] | None = None

    def check(self) -> None:
        for msg in take_all(self.commanded):
            self.commands += 1
            now = to_seconds(msg.header.stamp)
            position, velocity = dict(zip(msg.name, msg.position)), dict(zip(msg.name, msg.velocity))
            restart = False
            if self._previous is not None:
                then, before, _ = self._previous
                periods = max(1, round((now - then) / self.period_s))  # the stamps jitter; the periods do not
                reach = periods * self.period_s
                at_rest = all(abs(qd) <= self.amax[name] * reach + TOLERANCE for name, qd in velocity.items())
                restart = at_rest and (periods > RESTART_GAP_PERIODS or any(
                    abs(q - before[name]) > self.vmax[name] * reach + TOLERANCE for name, q in position.items()
                    if name in before))
                self.restarts += restart
            for name, q, qd in zip(msg.name, msg.position, msg.velocity):
                low, high, vmax = self.lower[name], self.upper[name], self.vmax[name]
                if not low - TOLERANCE <= q <= high + TOLERANCE:
                    self._violated(f"{name} commanded to {q:.4f}, limits [{low:.4f}, {high:.4f}]")
                if abs(qd) > vmax + TOLERANCE:
                    self._violated(f"{name} commanded at {qd:.4f}/s, limit {vmax:.4f}")
                if self._previous is not None and not restart:
                    step = abs(q - self._previous[1].get(name, q))
                    if step > self.vmax[name] * reach + TOLERANCE:
                        self._violated(f"{name} commanded {step:.4f} from the last command in {periods} periods "
                                       f"while moving, velocity limit {self.vmax[name]:.4f}")
                    change = abs(qd - self._previous[2].get(name, qd))
                    if change > self.amax[name] * periods * self.period_s + TOLERANCE:
                        self._violated(f"{name}'s velocity changed by {change:.4f} in {periods} periods, "
                                       f"acceleration limit {self.amax[name]:.4f}")
            self._previous = now, position, velocity
        if self.cmd_vel is not None:
            for msg in take_all(self.cmd_vel):
                self.commands += 1
                velocity = np.abs([msg.linear.x, msg.linear.y, msg.angular.z])
                if np.any(velocity > self.base.max_velocity + TOLERANCE):
                    self._violated(f"base commanded at {velocity}, limits {self.base.max_velocity}")

    def _violated(self, what: str) -> None:
        self.violations.append(f"{self.during}: {what}")


@dataclass
class Fuzzer:
    """Publishes the faults of each input from `node` and reads the graph's diagnostics and commands.

    `spin_until(condition, timeout_s, what)` spins `node` (the harness's or a SimClient's).
    """

    node: object
    spin_until: Callable
    embodiment: Embodiment
    statuses: dict = field(default_factory=dict)  # node name -> newest status values
    reports: dict = field(default_factory=dict)  # node name -> statuses read

    def __post_init__(self):
        from std_srvs.srv import Trigger

        self.inputs = inputs(self.embodiment)
        self.reset_client = self.node.create_client(Trigger, "controller_node/reset")
        self.publishers = {name: self.node.create_publisher(put.msg_type, put.topic, put.qos)
                           for name, put in self.inputs.items()}
        self.watch = LimitWatch(self.node, self.embodiment)
        self.node.create_subscription(DiagnosticArray, TOPIC, self._on_diagnostics, RELIABLE)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.statuses[status.name] = status_values(status)
            self.reports[status.name] = self.reports.get(status.name, 0) + 1

    def reset_controller(self) -> None:
        """Release an e-stop (controller_node's ~/reset) and wait until the controller runs or holds again."""
        from std_srvs.srv import Trigger

        self.spin_until(self.reset_client.service_is_ready, 30, "controller_node's reset service")
        future = self.reset_client.call_async(Trigger.Request())
        self.spin_until(future.done, 30, "controller_node's reset")
        self.spin_until(lambda: self.status("controller_node").get("state") in ("tracking", "holding"), 30,
                        "the controller running again")

    def status(self, node: str) -> dict:
        return self.statuses.get(node_name(node), {})

    def count(self, node: str, counter: str) -> int:
        value = self.status(node).get(counter, 0)
        return int(value) if str(value).isdigit() else 0

    def settle(self, nodes: set[str], counters: list[tuple[str, str]] = ()) -> None:
        """Until each of `nodes` has reported twice more with `counters` (node, counter) unchanged.

        Then what the nodes had queued is read and counted.
        """
        while True:
            before = [self.count(node, counter) for node, counter in counters]
            marks = {n: self.reports.get(node_name(n), 0) + 2 for n in nodes}
            self.spin_until(lambda: all(self.reports.get(node_name(n), 0) >= m for n, m in marks.items()), 30,
                            f"reports from {', '.join(sorted(nodes))}")
            self.watch.check()
            if [self.count(node, counter) for node, counter in counters] == before:
                return

    def send(self, name: str, fault: str, examples: int, seed: int) -> dict:
        """Publish `examples` drawn messages of `fault` to input `name`; what its nodes counted and said."""
        put = self.inputs[name]
        nodes = {node for node, _, _ in put.counters}
        self.settle(nodes)
        before = {(node, counter): self.count(node, counter) for node, counter, _ in put.counters}
        violations, restarts = len(self.watch.violations), self.watch.restarts
        self.watch.during = f"{name} ({fault})"
        publisher = self.publishers[name]

        def publish(shot: Shot) -> None:
            message = shot.message
            if shot.offset is not None:
                message.header.stamp = to_stamp(self.node.get_clock().now().nanoseconds * 1e-9 + shot.offset)
            publisher.publish(message)
            time.sleep(put.pace_s)  # not spinning: statuses are read when the fault's messages are out
            self.watch.check()

        sent = each(put.faults[fault](), examples, seed, publish)
        if put.after is not None:
            publisher.publish(put.after)
        self.settle(nodes, [(node, counter) for node, counter, _ in put.counters])
        if put.reset:
            self.reset_controller()
        counted = {f"{node}.{counter}": self.count(node, counter) - before[(node, counter)]
                   for node, counter, _ in put.counters}
        reasons = {node: str(self.status(node).get(reason, "")) for node, _, reason in put.counters}
        return {"input": name, "topic": put.topic, "fault": fault, "sent": sent, "counted": counted,
                "reasons": reasons, "limit_violations": len(self.watch.violations) - violations,
                "restarts": self.watch.restarts - restarts}


# --- the policy server -----------------------------------------------------------------------------------------


SERVER_FAULTS = ["random bytes", "truncated msgpack", "wrong types", "wrong shapes", "oversized frame"]


def _server_messages(fault: str, example: dict, limit: int):
    """Binary frames with `fault`, built around the server's own example observation."""
    from vla_ros.policy import wire

    good = wire.pack(example)
    if fault == "random bytes":
        return st.binary(min_size=0, max_size=2000)
    if fault == "truncated msgpack":
        return st.integers(0, len(good) - 1).map(lambda n: good[:n])
    if fault == "wrong types":
        packable = st.integers(-2**63, 2**64 - 1)  # msgpack's integers: a larger one is no message at all
        values = st.one_of(st.none(), st.booleans(), packable, st.floats(), st.text(max_size=20),
                           st.binary(max_size=20), st.lists(packable, max_size=4))
        return st.tuples(st.sampled_from(["images", "state", "prompt", "prefix", "stamp"]), values).map(
            lambda kv: msgpack.packb({**{k: v for k, v in example.items() if k != "images"}, kv[0]: kv[1],
                                      "images": {}}, default=lambda v: v.tolist()))
    if fault == "wrong shapes":
        shapes = st.one_of(st.lists(st.integers(0, 1000), max_size=2), st.lists(st.integers(0, 150), min_size=3,
                                                                                  max_size=3),
                           st.lists(st.integers(0, 20), min_size=4, max_size=5))  # at most a few MB each

        def shaped(choice):
            key, shape = choice
            array = np.zeros(shape, dtype=np.uint8 if key == "images" else np.float32)
            if key == "images":
                return wire.pack({**example, "images": {name: array for name in example["images"]}})
            return wire.pack({**example, key: array})
        return st.tuples(st.sampled_from(["images", "state", "prefix"]), shapes).map(shaped)
    return st.integers(limit + 1, limit + 4096).map(bytes)


def fuzz_server(examples: int, seed: int, faults: list[str] = SERVER_FAULTS) -> list[dict]:
    """Each of `faults` to a hold server in this process; per fault what came back.

    A reply is actions (what was drawn was a valid observation after all), a one-line error, or the
    connection closed (1009, over the size limit; the next message goes on a new connection). A
    multi-line error (a traceback) fails.
    """
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from vla_ros.embodiment import load_embodiment
    from vla_ros.policy import wire
    from vla_ros.policy.server import Limits, policy_server

    # The witness waits through each whole fault: no idle timeout for it.
    server = policy_server("hold", load_embodiment("arm7"), {}, port=0, limits=Limits(idle_timeout_s=86400.0))
    listening = threading.Event()
    port = []
    thread = threading.Thread(target=asyncio.run, args=(server.serve(lambda p: (port.append(p), listening.set())),),
                              daemon=True)
    thread.start()
    if not listening.wait(30):
        raise RuntimeError("the policy server did not listen within 30 s")
    url = f"ws://127.0.0.1:{port[0]}"
    results = []
    try:
        with connect(url, max_size=None) as witness:
            metadata = wire.unpack(witness.recv(timeout=10))
            example = metadata["example_observation"]
            for fault in faults:
                errors = server.errors
                seen = {"closed": 0, "answered": 0, "valid": 0}
                with contextlib.ExitStack() as connections:
                    ws = [connections.enter_context(connect(url, max_size=None))]
                    ws[0].recv(timeout=10)

                    def attack(message: bytes, fault=fault, connections=connections, ws=ws, seen=seen) -> None:
                        try:
                            ws[0].send(message)
                            reply = ws[0].recv(timeout=30)
                        except ConnectionClosed:
                            seen["closed"] += 1
                            ws[0].close()
                            ws[0] = connections.enter_context(connect(url, max_size=None))
                            ws[0].recv(timeout=10)
                            return
                        seen["answered"] += 1
                        seen["valid"] += isinstance(reply, bytes)
                        if isinstance(reply, str) and "\n" in reply:
                            raise AssertionError(f"{fault}: the server answered {reply!r:.300}: more than one line")

                    sent = each(_server_messages(fault, example, server.max_message_bytes), examples, seed, attack)
                witness.send(wire.pack(example))
                served = isinstance(witness.recv(timeout=30), bytes)
                results.append({"input": "policy server", "topic": url, "fault": fault, "sent": sent,
                                "counted": {"errors": server.errors - errors, "closed (1009)": seen["closed"]},
                                "answered": seen["answered"], "valid": seen["valid"], "witness_served": served})
    finally:
        server.stop()
        thread.join(10)
    return results


# --- the study ---------------------------------------------------------------------------------------------------


def outcome(row: dict) -> str:
    """What happened to a fault's messages, in words, for the matrix."""
    if row["input"] == "policy server":
        counted = row["counted"]
        if counted["closed (1009)"]:
            return f"connection closed (1009) {counted['closed (1009)']}x, other clients served"
        valid = f"; {row['valid']} were valid observations, answered" if row["valid"] else ""
        return f"one-line error {counted['errors']}x, connection kept{valid}"
    refused = sum(row["counted"].values())
    reason = next((r for r in row["reasons"].values() if r), "")
    if row["input"] in ("estop", "intervention"):
        return f"followed (limits held); {reason[:80]}"
    if refused:
        return f"refused and counted: {reason[:90]}"
    return "taken (a valid message), limits held"


def markdown(rows: list[dict], messages: int, seed: int) -> str:
    lines = ["# The fuzzed fault matrix", "",
             f"Written by `vla-ros bench fuzz --messages {messages} --seed {seed}` (bench/fuzz.py): each fault's "
             "messages drawn by hypothesis and published over DDS to the running graph (`mobile_manipulator`, "
             "sim, controller, hold policy, gamepad teleop) or sent to the policy server. Counted: refusals on "
             "the node's diagnostics (frames and joint states superseded before a node read them are neither "
             "used nor counted). Every node stayed up unless the table says otherwise.", "",
             "| input | fault | sent | counted | out-of-limit commands | restarts | outcome |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        counted = ", ".join(f"{k} {v}" for k, v in row["counted"].items())
        cells = [f"{row['input']} (`{row['topic']}`)", row["fault"], row["sent"], counted,
                 row.get("limit_violations", 0), row.get("restarts", 0), outcome(row).replace("|", "/")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def chart(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['input']}: {r['fault']}" for r in rows]
    figure, axis = plt.subplots(figsize=(8, 0.22 * len(rows) + 1))
    axis.barh(range(len(rows)), [r["sent"] for r in rows], color="lightgray", label="sent")
    axis.barh(range(len(rows)), [sum(r["counted"].values()) for r in rows], color="tab:blue", label="counted")
    axis.set_yticks(range(len(rows)), labels, fontsize=6)
    axis.invert_yaxis()
    axis.set_xlabel("messages")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    import dataclasses
    import tempfile

    from vla_ros.bringup import Options, graph
    from vla_ros.embodiment import load_embodiment
    from vla_ros.process import ProcessGroup
    from vla_ros.ros.sim_client import SimClient
    from vla_ros.terminal import console as make_console

    parser = argparse.ArgumentParser(prog="vla-ros bench fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000,
                        help="messages per input, shared evenly by its faults (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/fuzz.json"))
    parser.add_argument("--png", type=Path, default=Path("bench_results/fuzz.png"))
    parser.add_argument("--table", type=Path, default=Path("bench_results/fuzz.md"))
    parser.add_argument("--inputs", help="comma-separated inputs to fuzz, `server` for the policy server (default all)")
    args = parser.parse_args()
    console = make_console()
    robot = load_embodiment(BODY)
    def faster(node):
        rate = {"rate_hz": TELEOP_RATE_HZ} if node.name == "teleop_node" else {}
        return dataclasses.replace(node, parameters={**node.parameters, **rate,
                                                     "diagnostics_period_s": DIAGNOSTICS_PERIOD_S})
    nodes = [faster(node) for node in graph(Options(BODY, sim=True, policy="hold", teleop="joy"))]
    rows = []
    started = time.monotonic()
    with ProcessGroup(Path(tempfile.mkdtemp(prefix="vla_ros-fuzz-"))) as group:
        for node in nodes:
            group.start(node.name, node.argv())
        client = SimClient()
        fuzzer = Fuzzer(client.node, client.spin_until, robot)
        fuzzer.spin_until(lambda: fuzzer.status("policy_node").get("level") == 0, 120, "chunks from policy_node")
        chosen = set(args.inputs.split(",")) if args.inputs else {*fuzzer.inputs, "server"}
        unknown = chosen - {*fuzzer.inputs, "server"}
        if unknown:
            raise SystemExit(f"no input {', '.join(sorted(unknown))}; inputs: {', '.join(fuzzer.inputs)}, server")
        for name, put in fuzzer.inputs.items():
            for fault in put.faults if name in chosen else ():
                with console.status(f"{name}: {fault}"):
                    row = fuzzer.send(name, fault, math.ceil(args.messages / len(put.faults)), args.seed)
                rows.append(row)
                console.print(f"{name:14s} {fault:28s} sent {row['sent']:6d}  counted {row['counted']}  "
                              f"violations {row['limit_violations']}")
                for violation in fuzzer.watch.violations[len(fuzzer.watch.violations) - row["limit_violations"]:]:
                    console.print(f"  {violation}")
        stopped = [n for n, child in group.children.items() if child.poll() is not None]
        client.close()
    if "server" in chosen:
        with console.status("the policy server"):
            rows += fuzz_server(math.ceil(args.messages / len(SERVER_FAULTS)), args.seed)
    report = {"messages_per_input": args.messages, "seed": args.seed, "seconds": round(time.monotonic() - started, 1),
              "commands_checked": fuzzer.watch.commands, "restarts": fuzzer.watch.restarts,
              "limit_violations": fuzzer.watch.violations[:20],
              "nodes_stopped": stopped, "rows": rows}
    for path in (args.json, args.png, args.table):
        path.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    args.table.write_text(markdown(rows, args.messages, args.seed))
    chart(args.png, rows)
    console.print(f"{sum(r['sent'] for r in rows)} messages, {fuzzer.watch.commands} commands checked, "
                  f"{len(fuzzer.watch.violations)} out of the limits, nodes stopped: {stopped or 'none'}")


if __name__ == "__main__":
    main()
