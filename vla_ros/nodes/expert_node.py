"""The scripted expert as a ROS 2 node: solves the sim's current task through the robot's topics.

Reads joint_states, the cubes and the tray on sim/objects and the task on sim/task_status (privileged: only a
simulator has those), and commands each group on its <group>_controller/commands topic in the
group's mode (torques from the controller's law for effort groups), plus cmd_vel for a base.
Each joint state is answered as it arrives (the subscription keeps only the newest, so a late
executor never works through a queue of stale states): torques computed from an old state are
what destabilises a torque loop. The expert plans on a thread of its own from the newest state,
and each state is answered with the newest targets: a plan that takes long (a mobile base's drive,
planned with a cube in hand, solves IK for many stands in up to half a second) never leaves the
arms without torques. A new episode on sim/task_status restarts the expert. Run with
`python -m vla_ros.nodes.expert_node --ros-args -p embodiment:=arm7`; `vla-ros sim` does.
"""
from __future__ import annotations

import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Twist
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from visualization_msgs.msg import MarkerArray

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.ros.qos import RELIABLE
from vla_ros.ros.task_status import SimStatus, StatusError, from_status_msg
from vla_ros.ros.time import to_seconds
from vla_ros.sim.expert import EXPERTS, Expert, Observation, Targets, commands_from_targets
from vla_ros.sim.tasks import TASKS


class ExpertNode(VlaNode):
    """The task's scripted expert in charge of the sim robot (see the module docstring)."""

    params_type = RobotParams

    def __init__(self):
        super().__init__("expert_node")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.kinematics = self.embodiment.kinematics
        self.has_arm = any(g.kind == "arm" for g in self.embodiment.commanded_groups)
        self.expert: Expert | None = None
        self.status: SimStatus | None = None
        self.episode_start = np.inf  # [s] states and cubes older than this belong to an earlier episode
        self.cubes: dict[str, np.ndarray] = {}  # cube centres, root frame
        self.yaws: dict[str, float] = {}  # [rad] cubes' turns about the vertical, root frame
        self.places: dict[str, np.ndarray] = {}  # receptacles' floor centres, root frame
        self.order: np.ndarray | None = None
        self.commands_sent = 0
        self.bad_status = ""
        self._planned: tuple[Expert, Targets] | None = None  # the newest targets, and the expert that set them
        self._pending: tuple[Expert, Observation] | None = None  # the newest state, for the planner
        self._state_arrived = threading.Condition()
        self.commands = {g.name: self.create_publisher(Float64MultiArray, g.command_topic, RELIABLE)
                         for g in self.embodiment.commanded_groups}
        base = self.embodiment.base
        self.cmd_vel = self.create_publisher(Twist, base.command_topic, RELIABLE) if base else None
        self.create_subscription(DiagnosticStatus, "sim/task_status", self._on_status, RELIABLE)
        self.create_subscription(MarkerArray, "sim/objects", self._on_objects, RELIABLE)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 1)
        self.start_loop(self._plan, "planner")

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            status = from_status_msg(msg)
        except StatusError as error:
            self.bad_status = str(error)
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
            return
        if self.status is None or status.episode != self.status.episode:
            name, *parameters = status.task.split(":")
            self.episode_start = status.episode_start
            self.cubes = {}
            # A robot without an arm (a finger, a wheeled biped) holds its start pose: nothing to script.
            self.expert = (EXPERTS[name](self.embodiment, dict(zip(TASKS[name].parameters, parameters)))
                           if self.has_arm else None)
            self.get_logger().info(f"episode {status.episode}: {status.task} seed {status.seed}")
        self.status = status

    def _on_objects(self, msg: MarkerArray) -> None:
        if not msg.markers or to_seconds(msg.markers[0].header.stamp) < self.episode_start:
            return
        cubes = [m for m in msg.markers if m.ns == "cubes"]
        self.cubes = {m.text.removesuffix("_cube"): _position(m) for m in cubes}
        self.yaws = {m.text.removesuffix("_cube"): _yaw(m) for m in cubes}
        self.places = {m.text: _position(m) for m in msg.markers if m.ns == "receptacles"}

    def _on_joint_states(self, msg: JointState) -> None:
        expert = self.expert
        if expert is None or not self.cubes or to_seconds(msg.header.stamp) < self.episode_start:
            return
        if self.order is None:
            names = list(msg.name)
            self.order = np.array([names.index(n) for n in self.kinematics.joint_names])
        q = np.asarray(msg.position)[self.order]
        qd = np.asarray(msg.velocity)[self.order]
        with self._state_arrived:
            self._pending = expert, Observation(to_seconds(msg.header.stamp), q, self.cubes, self.yaws, self.places)
            self._state_arrived.notify()
        if self._planned is not None and self._planned[0] is expert:
            self._command(q, qd, self._planned[1])

    def _plan(self) -> None:
        """The planner thread: the expert's targets for the newest state, as fast as it gives them."""
        while not self.stopping.is_set():
            with self._state_arrived:
                self._state_arrived.wait_for(lambda: self._pending is not None, timeout=0.1)
                pending, self._pending = self._pending, None
            if pending is not None:
                expert, observation = pending
                self._planned = expert, expert.act(observation)

    def _command(self, q: np.ndarray, qd: np.ndarray, targets: Targets) -> None:
        for group, values in commands_from_targets(self.embodiment, q, qd, targets).items():
            self.commands[group].publish(Float64MultiArray(data=values.tolist()))
        if self.cmd_vel is not None:
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.angular.z = (float(v) for v in targets.base)
            self.cmd_vel.publish(twist)
        self.commands_sent += 1

    def report(self) -> Report:
        values = {"commands_sent": self.commands_sent, "bad_status": self.bad_status}
        if self.status is None:
            return Report(WARN, "waiting for the sim's task on sim/task_status", values)
        values.update(task=self.status.task, seed=self.status.seed, episode=self.status.episode)
        if not self.has_arm:
            return Report(OK, f"no arm to solve {self.status.task} with: the robot holds its start pose", values)
        return Report(OK, f"solving {self.status.task} (seed {self.status.seed})", values)


def _position(marker) -> np.ndarray:
    return np.array([marker.pose.position.x, marker.pose.position.y, marker.pose.position.z])


def _yaw(marker) -> float:
    """[rad] a marker's turn about its frame's z axis."""
    o = marker.pose.orientation
    return float(np.arctan2(2.0 * (o.w * o.z + o.x * o.y), 1.0 - 2.0 * (o.y * o.y + o.z * o.z)))


def main(args=None):
    run(ExpertNode, args)


if __name__ == "__main__":
    main()
