"""Scripted experts: solve the tasks from privileged state with the embodiment's kinematics.

An expert sees what a perfect perception system would report (the cubes' centres in the robot's
root frame) and the joint positions, and returns smooth joint targets: the tool follows straight
waypoints at a bounded speed, and damped least-squares IK turns that into joint targets that move
no faster than half the joints' velocity limits. One expert per task, in one registry.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pinocchio as pin

from vla_ros.control.pd import CommandLaw
from vla_ros.embodiment import Embodiment, JointGroup
from vla_ros.embodiment.config import END_EFFECTOR_KINDS
from vla_ros.embodiment.ik import TOOL_DOWN, ArmIK
from vla_ros.sim.tasks import GRASPED_HEIGHT, LIFT_HEIGHT, PUSH_DISTANCE, SIDES
from vla_ros.sim.world import APPROACH_HEIGHT, CUBE_SIZE, REACH_CLEARANCE, TRAY_FLOOR, rotation_z, work_heading

TOOL_SPEED = 0.3  # [m/s] moving through free space
PUSH_SPEED = 0.12  # [m/s] with a cube against the tool
WAYPOINT_TOLERANCE = 0.012  # [m]
GRIP_TOLERANCE = 0.004  # [m] the measured tool from a waypoint where the fingers close or open
REPLAN_DISTANCE = 0.01  # [m] a cube not yet grasped that moved this far gets a new plan
IK_LAG, IK_TURN_LAG = 0.02, 0.15  # [m], [rad]: how far the joint targets may trail the tool path
STALL_S = 0.3  # [s] without improvement: as close as the arm gets
PUSH_OPENING = 0.3  # of the gripper's range: a fingertip gap narrower than a cube
GRASP_SPEED = 0.15  # [m/s] down onto a cube and up with it
CARRY_SPEED = 0.15  # [m/s] with a cube in the fingers
CLOSE_S = 0.6  # [s] the fingers are given to close (or open) before the tool moves on
CARRY_HEIGHT = 0.12  # [m] a carried cube goes this far above where it lay and where it goes
LOW_CARRY_HEIGHT = 0.05  # [m] over where it goes, where no stand of a mobile base reaches CARRY_HEIGHT
RELEASE_DROP = 0.008  # [m] a placed cube is let go this far above where it comes to rest
BASE_SPEED = 0.2  # [m/s] a mobile base driving to bring the work into the arm's reach
BASE_GAIN = 2.0  # [1/s] its speed per metre still to go
BASE_TOLERANCE = 0.005  # [m] it stops this close to where it should stand
BASE_STEPS = np.arange(0.02, 0.301, 0.02)  # [m] how far it may drive, tried shortest first
BASE_APPROACH = 0.1  # [m] in all at most this far towards what it faces (+x: the table; it has no obstacle map)
MAX_DRIVES = 3  # per episode: to the grasp, again for a cube knocked away, to where it goes
SETTLE_S = 0.3  # [s] a carried cube is held still over where it goes before it is measured and lowered
GRASP_WAYPOINTS = 3  # a pick's first waypoints: over the cube, at it (the fingers close), lifted
FREE_TOLERANCE = 0.02  # [m] a waypoint in free space (not where the fingers close or open) may be missed by
DIRECT_REACH = 0.02  # [m] a pick starting with the tool low and this near over the cube goes straight to the grasp
IN_HAND = 0.03  # [m] a lifted cube's centre this near the tool's at the start is in the fingers
MAX_DT = 0.05  # [s] a longer gap between observations (a slow plan, a late state) counts as this: no jump after


@dataclass
class Observation:
    """What the expert knows.

    Time [s], joint positions in Kinematics.joint_names order, and cube centres [m] in the robot's
    root frame by colour.
    """

    time: float
    q: np.ndarray
    cubes: dict[str, np.ndarray]
    yaws: dict[str, float] = field(default_factory=dict)  # [rad] each cube's turn about the vertical, root frame
    places: dict[str, np.ndarray] = field(default_factory=dict)  # receptacle -> its floor's centre, root frame
    table_top: float | None = None  # [m] the table's top in the root frame; None: unknown (nothing starts in hand)


@dataclass
class Targets:
    """Per commanded group (q* [rad|m], qd* [rad/s|m/s]); base twist (vx, vy, wz)."""

    joints: dict[str, tuple[np.ndarray, np.ndarray]]
    base: np.ndarray = field(default_factory=lambda: np.zeros(3))


class Expert(ABC):
    """Common machinery: the active arm, its commanded joints and tool, the other groups held."""

    def __init__(self, embodiment: Embodiment, values: dict[str, str]):
        self.embodiment = embodiment
        self.kinematics = embodiment.kinematics
        self.values = values
        self.arms = [g for g in embodiment.commanded_groups if g.kind == "arm"]
        self._started = False
        self._replan = False

    def _start(self, observation: Observation) -> None:
        q = observation.q
        self.scene = observation
        self.waypoints = self.first_plan(observation)
        self.arm = self.choose_arm(q)
        self.ik = ArmIK.for_group(self.embodiment, self.arm)
        self.q_cmd = q.copy()
        pose = self.ik.pose(q)
        self.tool = pose[:3, 3].copy()
        self.rotation = _pointing_down(pose[:3, :3])
        self.orientation = TOOL_DOWN  # the tool axis only, unless prepare() says more
        self.held = {g.name: q[self.kinematics.index(g.joints)].copy() for g in self.embodiment.commanded_groups}
        self.prepare(q)
        self._turn, self._arrival, self._lag, self._reached = _Settling(), _Settling(), _Settling(), _Settling()
        self._dwelt = 0.0
        self.grip = "open"  # what a grasping expert's gripper does: "open" or "closed"
        self._last_time = observation.time
        self._started = True

    def choose_arm(self, q: np.ndarray) -> JointGroup:
        """The arm whose tool is nearest the first waypoint."""
        first = self.waypoints[0][0]
        return min(self.arms, key=lambda a: np.linalg.norm(ArmIK.for_group(self.embodiment, a).pose(q)[:3, 3] - first))

    def prepare(self, q: np.ndarray) -> None:
        """Adjust the plan to the chosen arm (its tool rotation, its gripper) before moving."""

    def closing(self, q: np.ndarray, gripper: JointGroup | None = None,
                rotation: np.ndarray | None = None) -> np.ndarray:
        """(3,) the direction the gripper's (or hand's) fingers close along, in the tool's frame.

        Of this expert's gripper and tool rotation, or of those given (an arm not yet chosen).
        """
        gripper = gripper or self.gripper
        rotation = self.rotation if rotation is None else rotation
        finger = self.embodiment.description.joints[gripper.joints[0]]
        axis = self.kinematics.frame_pose(q, finger.child)[:3, :3] @ finger.axis
        # A sliding finger closes along its axis; a hinged one swings across its hinge and the tool axis.
        return rotation.T @ (axis if finger.type == "prismatic" else np.cross(axis, rotation[:, 2]))

    def retarget(self, values: dict[str, str]) -> None:
        """A change of mind: from the next act(), plan afresh for the cube `values` names.

        From where the tool is (same arm, no stop first).
        """
        self.values = values
        self._replan = True

    def _dwell(self, measured: np.ndarray, dt: float) -> bool:
        """At the current waypoint: take up its grip, then whether its dwell time has passed.

        The grip changes once the tool is there as measured (`measured`, root frame), not only as
        commanded: an arm that trails its targets would close its fingers above the cube.
        """
        if len(self.waypoints[0]) == 2:
            return True
        goal, _, grip, dwell = self.waypoints[0]
        if grip != self.grip and not self._reached.settled(float(np.linalg.norm(measured - goal)), GRIP_TOLERANCE,
                                                           dt):
            return False
        self.grip = grip
        self._dwelt += dt
        return self._dwelt >= dwell

    def _turn_error(self, achieved: np.ndarray) -> float:
        """[rad] between the commanded tool orientation and the wanted one (rotation or axis)."""
        if self.orientation.shape == (3, 3):
            return float(np.linalg.norm(pin.log3(self.orientation @ achieved[:3, :3].T)))
        return float(np.arccos(np.clip(achieved[:3, 2] @ self.orientation, -1.0, 1.0)))

    def first_plan(self, observation: Observation) -> list[tuple]:
        """The plan from the state the expert starts in: for the named cube where it is."""
        return self.plan(observation.cubes[self.values["colour"]])

    @abstractmethod
    def plan(self, cube: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(tool waypoint in the root frame [m], speed to it [m/s]) for a cube at `cube`."""

    def gripper_target(self, group: JointGroup) -> np.ndarray:
        return self.held[group.name]

    def leave(self, waypoint: tuple, observation: Observation) -> None:
        """The tool is done with `waypoint` and heads for the next."""

    def act(self, observation: Observation) -> Targets:
        if not self._started:
            self._start(observation)
        if self._replan:
            self.scene = observation
            self.waypoints = self.plan(observation.cubes[self.values["colour"]])
            self._arrival, self._reached = _Settling(), _Settling()
            self._replan = False
        dt = self._elapsed(observation)
        self._last_time = observation.time
        # Advance along the path only as fast as the joint targets follow it (a large wrist turn,
        # say); take the next waypoint once they have put the tool at this one. Where the arm
        # cannot quite get (a joint limit, the edge of the workspace), it stops holding things up
        # once it stops improving.
        achieved = self.ik.pose(self.q_cmd)
        turned = self._turn.settled(self._turn_error(achieved), IK_TURN_LAG, dt)
        goal, speed = self.waypoints[0][:2]
        gap = float(np.linalg.norm(achieved[:3, 3] - goal))
        arrived = gap < WAYPOINT_TOLERANCE or (
            np.linalg.norm(self.tool - goal) < 1e-6 and self._arrival.settled(gap, WAYPOINT_TOLERANCE, dt))
        if turned and arrived and self._dwell(self.ik.pose(observation.q)[:3, 3], dt) and len(self.waypoints) > 1:
            self.leave(self.waypoints.pop(0), observation)
            self._arrival, self._reached = _Settling(), _Settling()
            self._dwelt = 0.0
            goal, speed = self.waypoints[0][:2]
        if turned and self._lag.settled(float(np.linalg.norm(achieved[:3, 3] - self.tool)), IK_LAG, dt):
            step = goal - self.tool
            distance = np.linalg.norm(step)
            if distance > speed * dt:
                step *= speed * dt / distance
            self.tool = self.tool + step
        index = self.kinematics.index(self.arm.joints)
        previous = self.q_cmd[index].copy()
        max_step = 0.5 * float(np.min(self.arm.velocity_limit)) * max(dt, 1e-3)
        self.q_cmd = self.ik.step(self.q_cmd, self.tool, self.orientation, max_step)
        velocity = (self.q_cmd[index] - previous) / dt if dt > 0 else np.zeros(len(index))
        return Targets(self._joint_targets(velocity))

    def _elapsed(self, observation: Observation) -> float:
        """[s] since the last observation acted on, at most MAX_DT."""
        return float(np.clip(observation.time - self._last_time, 0.0, MAX_DT))

    def _joint_targets(self, velocity: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The arm at its commanded joints moving at `velocity`, grippers as the task says, the rest held."""
        joints = {}
        for group in self.embodiment.commanded_groups:
            if group.name == self.arm.name:
                joints[group.name] = (self.q_cmd[self.kinematics.index(self.arm.joints)].copy(), velocity)
            elif group.kind in END_EFFECTOR_KINDS:
                joints[group.name] = (self.gripper_target(group), np.zeros(len(group.joints)))
            else:
                joints[group.name] = (self.held[group.name], np.zeros(len(group.joints)))
        return joints


class _Settling:
    """An error that should shrink: settled when below a tolerance, or no longer improving."""

    def __init__(self):
        self.best, self.stalled_s = np.inf, 0.0

    def settled(self, error: float, tolerance: float, dt: float) -> bool:
        if error < self.best - 1e-3:
            self.best, self.stalled_s = error, 0.0
        else:
            self.stalled_s += dt
        return error < tolerance or self.stalled_s > STALL_S


class ReachExpert(Expert):
    """Over the cube, then down to just above its top face."""

    def plan(self, cube: np.ndarray) -> list[tuple[np.ndarray, float]]:
        goal = cube + np.array([0.0, 0.0, CUBE_SIZE / 2 + REACH_CLEARANCE])
        return [(goal + np.array([0.0, 0.0, APPROACH_HEIGHT]), TOOL_SPEED), (goal, TOOL_SPEED)]


class PushExpert(Expert):
    """Beside the cube, down to its centre height, through, then up.

    A gripper or hand pushes with two fingertips: turned about the tool axis so its fingers sit
    side by side across the pushed face, opened to a gap narrower than the cube, which then cannot
    slip off the way it does from a single closed-finger paddle.
    """

    def __init__(self, embodiment: Embodiment, values: dict[str, str]):
        super().__init__(embodiment, values)
        self.work_turn = rotation_z(work_heading(embodiment))[:2, :2]

    def _direction(self) -> np.ndarray:
        """(2,) the side the cube goes, in the root frame."""
        return self.work_turn @ SIDES[self.values["side"]]

    def prepare(self, q: np.ndarray) -> None:
        self.gripper = self.embodiment.end_effector(self.arm)
        if self.gripper is None:
            return
        local = self.closing(q)
        direction = self._direction()
        angles = np.linspace(-np.pi, np.pi, 145)
        misalignment = [abs((self.rotation @ rotation_z(a) @ local)[:2] @ direction) + 1e-3 * abs(a) for a in angles]
        self.orientation = self.rotation @ rotation_z(angles[int(np.argmin(misalignment))])

    def plan(self, cube: np.ndarray) -> list[tuple[np.ndarray, float]]:
        direction = np.append(self._direction(), 0.0)
        behind = cube - direction * (CUBE_SIZE / 2 + 0.04)
        through = behind + direction * (PUSH_DISTANCE + 0.1)
        lift = np.array([0.0, 0.0, APPROACH_HEIGHT])
        return [(behind + lift, TOOL_SPEED), (behind, TOOL_SPEED), (through, PUSH_SPEED), (through + lift, TOOL_SPEED)]

    def gripper_target(self, group: JointGroup) -> np.ndarray:
        """The pushing gripper or hand 30% open from its closed limit (the one farther from home)."""
        if group is not self.gripper:
            return self.held[group.name]
        opened, closed = group.grip_range()
        return (closed + PUSH_OPENING * (opened - closed)).astype(float)


class PickExpert(Expert):
    """Over the cube with the fingers across two of its faces, down, close, and up LIFT_HEIGHT.

    Until the fingers first close, a cube that moved more than REPLAN_DISTANCE from where the plan
    was made (knocked, or nudged by an evaluation) gets a new plan from where the tool is. A cube
    held off the middle of the fingers is let go where it should be, not where the tool's centre
    is. A mobile base drives (the arm held still) where its arm cannot get to the grasp, and again,
    the cube in hand, where it cannot get to where the cube goes.
    """

    def act(self, observation: Observation) -> Targets:
        cube = observation.cubes[self.values["colour"]]
        if not self._started:
            self._planned_at, self._grasped = cube, False
            self._stand, self._drives, self._approached = None, 0, 0.0
        elif self.grip == "closed":
            self._grasped = True
        elif not self._grasped and self._stand is None and np.linalg.norm(cube - self._planned_at) > REPLAN_DISTANCE:
            self._planned_at = cube
            self._start(observation)
        if self._stand is None:
            targets = super().act(observation)
            if self._stand is None:
                return targets
        return self._drive(observation)

    def _start(self, observation: Observation) -> None:
        """Plan from here: from low within DIRECT_REACH over the cube, straight down to the grasp.

        Not up over the cube first: a policy handing over there has the open fingers around it
        already. One handing over with the cube in its fingers (`first_plan`) leaves the expert
        the rest: the fingers stay closed and the plan goes on from the lift.
        """
        first = not self._started
        super()._start(observation)
        if self._holding is not None:
            self.grip, self._grasped = "closed", True
            return
        over, at = self.waypoints[0][0], self.waypoints[1][0]
        if first and np.linalg.norm(self.tool[:2] - at[:2]) < DIRECT_REACH and self.tool[2] < over[2]:
            self.waypoints.pop(0)

    def first_plan(self, observation: Observation) -> list[tuple]:
        """The whole plan, or with the cube already in an arm's fingers (`_holding`) the plan after the grasp.

        In the fingers: off the table by GRASPED_HEIGHT, its centre within IN_HAND of the tool's.
        The plan is then made for the cube as if it lay on the table below where it is.
        """
        cube = observation.cubes[self.values["colour"]]
        self._holding = None
        if observation.table_top is not None and not self._started:
            rest = np.array([cube[0], cube[1], observation.table_top + CUBE_SIZE / 2])
            for arm in self.arms if cube[2] - rest[2] > GRASPED_HEIGHT else ():
                if np.linalg.norm(ArmIK.for_group(self.embodiment, arm).pose(observation.q)[:3, 3] - cube) < IN_HAND:
                    self._holding = arm
                    return self.plan(rest)[GRASP_WAYPOINTS - 1:]
        return self.plan(cube)

    def destination(self, observation: Observation) -> np.ndarray:
        """Where the cube is to end up (root frame): for a pick, where it lies."""
        return self._planned_at

    def _anchor(self, observation: Observation) -> np.ndarray:
        """(2,) root-frame xy of what stays put while the base drives: the cube, once held where it goes."""
        return (self.destination(observation) if self._grasped else observation.cubes[self.values["colour"]])[:2]

    def _drive(self, observation: Observation) -> Targets:
        """Towards where the base should stand; there, the plan moved with it (or made afresh) and on."""
        anchor = self._anchor(observation)
        to_go = anchor - self._stand
        distance = float(np.linalg.norm(to_go))
        dt = self._elapsed(observation)
        if self._driving.settled(distance, BASE_TOLERANCE, dt):  # there, or blocked
            self._stand = None
            self._drives += 1
            if self._grasped:
                moved = np.append(anchor - self._anchor_at, 0.0)
                self.waypoints = [(point + moved, *rest) for point, *rest in self.waypoints]
                self._last_time = observation.time
            else:
                self._planned_at = observation.cubes[self.values["colour"]]
                self._start(observation)
            return super().act(observation)
        self._last_time = observation.time
        twist = np.append(to_go / distance * min(BASE_SPEED, BASE_GAIN * distance), 0.0)
        return Targets(self._joint_targets(np.zeros(len(self.arm.joints))), base=twist)

    def _plan_drive(self, observation: Observation, arm: JointGroup, waypoints: list[tuple],
                    orientations: list[np.ndarray]) -> bool:
        """Where a mobile base should stand (`_stand`) for `arm` to get to `waypoints`, if it cannot from here.

        False when it cannot from here and no stand within BASE_STEPS and BASE_APPROACH gets it
        there; True otherwise, also where the base may not drive (none, or no drives left).
        """
        no_shift = np.zeros(3)
        if (self.embodiment.base is None or self._drives >= MAX_DRIVES
                or self._reaches(arm, observation.q, no_shift, waypoints, orientations)):
            return True
        self._anchor_at = self._anchor(observation)
        farthest = max((point for point, *_ in waypoints), key=lambda p: np.linalg.norm(p[:2]))
        heading = np.arctan2(farthest[1], farthest[0])
        turns = sorted(np.linspace(-np.pi, np.pi, 16, endpoint=False), key=abs)
        for distance in BASE_STEPS:  # the shortest drive, first towards the waypoint farthest from the root
            for turn in turns:
                shift = distance * np.array([np.cos(heading + turn), np.sin(heading + turn), 0.0])
                if (self._approached + shift[0] <= BASE_APPROACH
                        and self._reaches(arm, observation.q, shift, waypoints, orientations)):
                    self._stand, self._driving = self._anchor_at - shift[:2], _Settling()
                    self._approached += max(shift[0], 0.0)
                    return True
        return False

    def _reaches(self, arm: JointGroup, q: np.ndarray, shift: np.ndarray, waypoints: list[tuple],
                 orientations: list[np.ndarray]) -> bool:
        """Whether, the base moved by `shift`, one of `orientations` gets `arm`'s tool close enough to `waypoints`.

        Within GRIP_TOLERANCE where the fingers close or open, FREE_TOLERANCE elsewhere.
        """
        ik = ArmIK.for_group(self.embodiment, arm)
        for orientation in orientations:
            if all(ik.solve(q, point - shift, orientation, tolerance=GRIP_TOLERANCE)[1]
                   < (GRIP_TOLERANCE if rest[2] >= CLOSE_S else FREE_TOLERANCE) for point, *rest in waypoints):
                return True
        return False

    def choose_arm(self, q: np.ndarray) -> JointGroup:
        """The arm, and its grasp (`grasps`), that get the tool nearest to the waypoint it gets worst to.

        A humanoid's hand on the side of the cube may not reach where the cube goes, or reach it
        only with the wrist turned another quarter. A mobile base whose arm cannot get to the
        grasp will drive first (`_plan_drive`). The arm holding the cube keeps it, and its turn.
        """
        if self._holding is not None:
            self._grasp = self.grasps(self._holding, q)[0]
            return self._holding
        best = None
        for arm in self.arms:
            ik = ArmIK.for_group(self.embodiment, arm)
            for orientation in self.grasps(arm, q):
                worst = max(ik.solve(q, point, orientation, tolerance=GRIP_TOLERANCE)[1]
                            for point, *_ in self.waypoints)
                if best is None or worst < best[0] - 1e-3:
                    best = (worst, arm, orientation)
                if worst < GRIP_TOLERANCE:
                    break
        _, arm, self._grasp = best
        self._plan_drive(self.scene, arm, self.waypoints[:GRASP_WAYPOINTS], self.grasps(arm, q))
        return arm

    def grasps(self, arm: JointGroup, q: np.ndarray) -> list[np.ndarray]:
        """Tool orientations of `arm` with the fingers across two faces of the cube, least turn first.

        Four a quarter turn apart (rotations); the tool axis alone for an arm without a gripper.
        """
        gripper = self.embodiment.end_effector(arm)
        if gripper is None:
            return [TOOL_DOWN]
        rotation = _pointing_down(ArmIK.for_group(self.embodiment, arm).pose(q)[:3, :3])
        closing = self.closing(q, gripper, rotation)
        faces = rotation_z(self.scene.yaws.get(self.values["colour"], 0.0))[:2, :2]
        angles = np.linspace(-np.pi, np.pi, 361)
        misalignment = [min(abs((rotation @ rotation_z(a) @ closing)[:2] @ face) for face in faces.T) for a in angles]
        across = angles[int(np.argmin(misalignment))]
        turns = sorted((np.arctan2(np.sin(across + k * np.pi / 2), np.cos(across + k * np.pi / 2)) for k in range(4)),
                       key=abs)
        return [rotation @ rotation_z(turn) for turn in turns]

    def prepare(self, q: np.ndarray) -> None:
        self.gripper = self.embodiment.end_effector(self.arm)
        self.orientation = self._grasp

    def leave(self, waypoint: tuple, observation: Observation) -> None:
        """Lifted, a mobile base drives if need be; still over where the cube goes, the path moves with it.

        Once lifted, a mobile base whose arm cannot take the cube where it goes drives first (and
        carries it LOW_CARRY_HEIGHT over where it goes if no stand reaches CARRY_HEIGHT there). Held
        still over where it goes, the rest of the path moves by how far the cube sits from the
        tool's centre: a cube off the middle of the fingers (or one that slid when the arm stopped) is then let go
        where it should be, not where the tool's centre is; measured once the arm has been still
        for SETTLE_S, when the cube's reported position has caught up with it.
        """
        _, _, grip, dwell = waypoint
        if grip != "closed" or dwell == CLOSE_S:  # not carrying, or the grasp itself
            return
        if dwell == SETTLE_S:
            offset = observation.cubes[self.values["colour"]] - self.ik.pose(observation.q)[:3, 3]
            self.waypoints = [(point - offset, *rest) for point, *rest in self.waypoints]
        else:
            for lowered in (self.waypoints, _lowered(self.waypoints, CARRY_HEIGHT - LOW_CARRY_HEIGHT)):
                if self._plan_drive(observation, self.arm, lowered, [self.orientation]):
                    self.waypoints = lowered
                    return

    @staticmethod
    def grasp(cube: np.ndarray) -> list[tuple]:
        """Open over the cube, down to its centre, close."""
        return [(cube + np.array([0.0, 0.0, APPROACH_HEIGHT]), TOOL_SPEED, "open", 0.0),
                (cube, GRASP_SPEED, "closed", CLOSE_S)]

    def plan(self, cube: np.ndarray) -> list[tuple]:
        return [*self.grasp(cube), (cube + np.array([0.0, 0.0, LIFT_HEIGHT + 0.03]), GRASP_SPEED, "closed", 0.0)]

    def place(self, cube: np.ndarray, goal: np.ndarray) -> list[tuple]:
        """Picked at `cube`, carried over `goal` (where its centre should end up), let go there, and up."""
        up = np.array([0.0, 0.0, CARRY_HEIGHT])
        release = goal + np.array([0.0, 0.0, RELEASE_DROP])
        return [*self.grasp(cube), (cube + up, GRASP_SPEED, "closed", 0.0),
                (release + up, CARRY_SPEED, "closed", SETTLE_S), (release, GRASP_SPEED, "open", CLOSE_S),
                (release + up, GRASP_SPEED, "open", 0.0)]

    def gripper_target(self, group: JointGroup) -> np.ndarray:
        if group is not self.gripper:
            return self.held[group.name]
        opened, closed = group.grip_range()
        return (closed if self.grip == "closed" else opened).astype(float)


class PickPlaceExpert(PickExpert):
    """Pick the cube, carry it over the receptacle, let go a little above its floor."""

    def destination(self, observation: Observation) -> np.ndarray:
        return observation.places[self.values["receptacle"]]

    def plan(self, cube: np.ndarray) -> list[tuple]:
        floor = self.scene.places[self.values["receptacle"]]
        return self.place(cube, floor + np.array([0.0, 0.0, TRAY_FLOOR + CUBE_SIZE / 2]))


class StackExpert(PickExpert):
    """Pick the cube, carry it over the other one, let go a little above its top face."""

    def destination(self, observation: Observation) -> np.ndarray:
        return observation.cubes[self.values["base"]]

    def plan(self, cube: np.ndarray) -> list[tuple]:
        return self.place(cube, self.scene.cubes[self.values["base"]] + np.array([0.0, 0.0, CUBE_SIZE]))


def _lowered(waypoints: list[tuple], by: float) -> list[tuple]:
    """`waypoints` with those higher than `by` over the lowest brought down by `by` [m]."""
    floor = min(point[2] for point, *_ in waypoints)
    return [(point - np.array([0.0, 0.0, by]) if point[2] > floor + by else point, *rest) for point, *rest in waypoints]


def _pointing_down(rotation: np.ndarray) -> np.ndarray:
    """`rotation` turned the shortest way so that its z axis points along TOOL_DOWN."""
    axis = np.cross(rotation[:, 2], TOOL_DOWN)
    angle = np.arctan2(np.linalg.norm(axis), rotation[:, 2] @ TOOL_DOWN)
    if np.linalg.norm(axis) < 1e-9:
        axis = rotation[:, 0] if angle > 1.0 else TOOL_DOWN  # pointing up: flip about its x axis
    return pin.exp3(axis / np.linalg.norm(axis) * angle) @ rotation


EXPERTS: dict[str, type[Expert]] = {"reach": ReachExpert, "push": PushExpert, "pick": PickExpert,
                                   "pick_place": PickPlaceExpert, "stack": StackExpert}


@functools.lru_cache(maxsize=8)
def _command_law(embodiment: Embodiment) -> CommandLaw:
    return CommandLaw(embodiment, embodiment.commanded_groups)


def commands_from_targets(embodiment: Embodiment, q: np.ndarray, qd: np.ndarray,
                          targets: Targets) -> dict[str, np.ndarray]:
    """Each group's hardware command (control/pd.py: torques in effort mode), as the controller's."""
    law = _command_law(embodiment)
    q_target = np.concatenate([targets.joints[g.name][0] for g in law.groups])
    qd_target = np.concatenate([targets.joints[g.name][1] for g in law.groups])
    return law.commands(q, qd, q_target, qd_target)
