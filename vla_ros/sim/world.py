"""The simulated world: an embodiment in a tabletop scene with coloured cubes, cameras and lights.

Where the robot stands comes from the embodiment: a fixed-base arm is mounted on the table, a
mobile base or a humanoid stands on the floor in front of it (a humanoid's pelvis welded in place
and its delegated legs held stiff: a stand-in for the vendor's balance stack). The table is on the
side of the robot where its hands are at home: ahead for most, beside a Stretch, whose arm reaches
out sideways. Cubes are placed at seeded random positions on the table that an arm can reach with
the tool at its home orientation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import mujoco
import numpy as np

from vla_ros.embodiment import Embodiment, JointGroup
from vla_ros.embodiment.ik import TOOL_DOWN, ArmIK
from vla_ros.errors import VlaRosError
from vla_ros.sim.robot import ROBOT_CONTYPE, RobotBuilder, body_name

COLOURS = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.15, 0.65, 0.20, 1.0),
    "blue": (0.12, 0.30, 0.85, 1.0),
    "yellow": (0.95, 0.80, 0.10, 1.0),
}
CUBE_SIZE = 0.04  # [m] edge
TRAY_SIZE, TRAY_WALL, TRAY_FLOOR = 0.14, 0.03, 0.008  # [m] outer edge, wall height, floor thickness
TRAY_RGBA = (0.88, 0.88, 0.84, 1.0)
TRAY_CLEARANCE = 0.14  # [m] from the tray's centre to any cube's
DISTRACTOR_RADIUS, DISTRACTOR_HEIGHT = 0.03, 0.07  # [m] a grey can (the eval's "distractor" perturbation)
DISTRACTOR_RGBA = (0.55, 0.55, 0.58, 1.0)
PARKED = (0.0, 0.0, -1.0)  # where a fixed object of the scene waits, below the floor, while it is not used
CUBE_MASS = 0.1  # [kg]
CUBE_SPACING = 0.12  # [m] minimum distance between cube centres
CUBE_TURN = np.pi / 6  # [rad] a cube lies at most this far turned from the table's axes: short of 45 degrees, the
# quarter turn that puts fingers across two of its faces is never a toss-up between two
SCENE_TRIES = 10  # cube placements drawn until the tray serves every cube
# [m] the tool stops this far above a cube's top face (4 cm of the 5 cm success radius left sideways)
REACH_CLEARANCE = 0.01
TABLE_HEIGHT = 0.75  # [m] when the robot is mounted on the table
TABLE_BELOW_HANDS = 0.15  # [m] table top below the lowest hand at home, for robots on the floor
APPROACH_HEIGHT = 0.08  # [m] a tool comes down onto a cube from this far above its goal
# A cube must be reachable where it is and from above; and where a push to either side takes it
# (work frame), on the robots whose arm reaches that anywhere on the table (a Stretch's barely moves sideways).
REACH_ROOM = (np.zeros(3), np.array([0.0, 0.0, APPROACH_HEIGHT]))
PUSH_ROOM = (*REACH_ROOM, np.array([0.0, 0.12, 0.0]), np.array([0.0, -0.12, 0.0]))
HOME_NOISE = 0.03  # [rad | m] seeded perturbation of the commanded joints at reset
LEG_HOLD_KP, LEG_HOLD_KV = 800.0, 40.0
BASE_KV = (4000.0, 4000.0, 800.0)  # velocity servo gains of the planar base (x, y, yaw)
ENV_CONTYPE = 1  # floor and table
OBJECT_BITS = ENV_CONTYPE | ROBOT_CONTYPE  # cubes touch the floor, the table and the robot


class SceneError(VlaRosError):
    """The scene cannot be set up for an embodiment (no reachable place for the cubes, say)."""


@dataclass(frozen=True)
class Layout:
    """Where the robot, the table and the cubes' region are.

    The robot in the world frame (floor at z = 0, the robot facing +x); the table and the cubes'
    region in the work frame: the world turned by `heading` about its z axis (the vertical through
    the robot's root) so that the robot's hands at home are ahead (+x).
    """

    robot_pos: np.ndarray  # (3,) root link origin, world frame
    heading: float  # [rad] yaw of the work frame in the world, a multiple of pi/2
    table_center: np.ndarray  # (3,) work frame
    table_half: np.ndarray  # (3,) half extents, work frame
    sample_low: np.ndarray  # (2,) xy box cubes are drawn from, work frame
    sample_high: np.ndarray

    @property
    def table_top(self) -> float:
        return float(self.table_center[2] + self.table_half[2])

    @property
    def turn(self) -> np.ndarray:
        """(3, 3) rotation from the work frame to the world."""
        return rotation_z(self.heading)

    def to_world(self, point: np.ndarray) -> np.ndarray:
        """A point (3,) or xy (2,) of the work frame in the world (both share the origin)."""
        return self.turn[:len(point), :len(point)] @ point


class World:
    """MuJoCo model and data of one embodiment in the scene; deterministic given a seed.

    Attributes:
        model, data: MuJoCo's.
        joint_names: every movable URDF joint (mimic, wheels and legs included), for joint_states.
        colours: the cubes present, each named "<colour>_cube".
        layout: where the robot, table and cube region are.
    """

    def __init__(self, embodiment: Embodiment, colours: tuple[str, ...] = ("red", "green", "blue"),
                 timestep: float = 0.002):
        self.embodiment = embodiment
        self.colours = tuple(colours)
        self.planar_base = embodiment.base is not None
        self.on_table = not self.planar_base and not embodiment.delegated_groups
        self.arms = [g for g in embodiment.commanded_groups if g.kind == "arm"]
        self.ik = {arm.name: ArmIK.for_group(embodiment, arm) for arm in self.arms}
        self.layout = self._measure_layout()
        spec = self._spec(timestep)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._index()
        self.seed = 0
        self.unreached: list[str] = []  # cubes of this episode no arm reaches with its tool pointing down

    # -- building ---------------------------------------------------------------------------
    def _robot_spec(self, root_pos: np.ndarray) -> mujoco.MjSpec:
        spec = mujoco.MjSpec()
        spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
        spec.compiler.degree = False
        armature = {j: g.armature for g in self.embodiment.groups.values() for j in g.joints}
        RobotBuilder(spec, self.embodiment.description, armature).build(spec.worldbody, root_pos, self.planar_base)
        return spec

    def _measure_layout(self) -> Layout:
        """Compile the robot alone at home to find its feet, its hands and, towards them, its front."""
        model = self._robot_spec(np.zeros(3)).compile()
        data = mujoco.MjData(model)
        self._set_home(model, data, rng=None)
        mujoco.mj_forward(model, data)
        heading = work_heading(self.embodiment)
        to_work = rotation_z(-heading)
        corners = {geom: points @ to_work.T for geom, points in _geom_corners(model, data).items()}
        hands = np.array([data.xpos[model.body(body_name(arm.ee_frame)).id] for arm in self.arms]).reshape(-1, 3)
        hands = hands @ to_work.T
        root = model.body(body_name(self.embodiment.description.root)).id
        root_geoms = [g for g in corners if model.geom_bodyid[g] == root]
        if self.on_table:
            lowest = min((corners[g][:, 2].min() for g in root_geoms), default=0.0)
            robot_pos = np.array([0.0, 0.0, TABLE_HEIGHT - lowest])
        else:
            robot_pos = np.array([0.0, 0.0, -min(c[:, 2].min() for c in corners.values()) + 0.001])
        if not self.arms:  # nothing reaches: a table just in front of the robot, at its top's height
            every = np.concatenate(list(corners.values()))
            hands = np.array([[every[:, 0].max() + 0.3, 0.0, every[:, 2].max()]])
        hands = hands + robot_pos
        if self.on_table:
            top, front = TABLE_HEIGHT, -0.25
        else:
            top = float(np.clip(hands[:, 2].min() - TABLE_BELOW_HANDS, 0.3, 1.1))
            body_front = max((corners[g][:, 0].max() for g in root_geoms), default=0.0)
            front = max(hands[:, 0].min() - 0.3, body_front + 0.05)
        # Around a single hand; between two hands (beyond them a head camera looks past the forearms).
        spread = np.array([0.2, 0.3 if len(self.arms) == 1 else 0.1])
        # Hands at home above the robot's own base (a Stretch's arm drawn in): the cubes go beyond it.
        hands[:, 0] += max(0.0, front + 0.06 + spread[0] - hands[:, 0].min())
        back = hands[:, 0].max() + 0.45
        half = np.array([(back - front) / 2, 0.7, 0.02])
        center = np.array([(back + front) / 2, 0.0, top - half[2]])
        reach_low = hands[:, :2].min(axis=0) - spread
        reach_high = hands[:, :2].max(axis=0) + spread
        low = np.maximum(reach_low, [front + 0.06, -half[1] + 0.06])
        high = np.minimum(reach_high, [back - 0.06, half[1] - 0.06])
        return Layout(robot_pos, heading, center, half, low, high)

    def _spec(self, timestep: float) -> mujoco.MjSpec:
        spec = self._robot_spec(self.layout.robot_pos)
        spec.option.timestep = timestep
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        # Grasps: elliptic friction cones with a high impedance ratio keep a squeezed cube from
        # creeping out of the fingers (MuJoCo's advice for manipulation).
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        spec.option.impratio = 10.0
        spec.visual.global_.offwidth = 1280
        spec.visual.global_.offheight = 960
        # Rendering on a CPU (Mesa llvmpipe) competes with physics and the policy for 2 cores:
        # no multisampling and no shadows keep a 224x224 frame near 7 ms instead of 42.
        spec.visual.quality.offsamples = 0
        layout = self.layout
        spec.stat.center = layout.to_world(np.array([layout.table_center[0] / 2, 0, layout.table_top]))
        spec.stat.extent = 1.5
        world = spec.worldbody
        checker = spec.add_texture(name="floor", type=mujoco.mjtTexture.mjTEXTURE_2D,
                                   builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=512, height=512,
                                   rgb1=[0.32, 0.34, 0.38], rgb2=[0.26, 0.28, 0.31])
        floor = spec.add_material(name="floor", texrepeat=[8, 8], reflectance=0.05)
        floor.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = checker.name
        world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[5, 5, 0.1], material="floor",
                       contype=ENV_CONTYPE, conaffinity=ENV_CONTYPE)
        # The table, its legs, the lights and the overview camera are laid out in the work frame.
        turn = np.zeros(4)
        mujoco.mju_mat2Quat(turn, layout.turn.flatten())
        world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=layout.to_world(layout.table_center),
                       quat=turn, size=layout.table_half, rgba=[0.62, 0.47, 0.32, 1],
                       contype=ENV_CONTYPE, conaffinity=OBJECT_BITS, friction=[0.8, 0.005, 0.0001])
        for sx in (-1, 1):
            for sy in (-1, 1):
                corner = layout.table_center[:2] + np.array([sx, sy]) * (layout.table_half[:2] - 0.05)
                height = layout.table_top - 2 * layout.table_half[2]
                world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=[*layout.to_world(corner), height / 2],
                               size=[0.03, 0.03, height / 2], rgba=[0.45, 0.33, 0.22, 1],
                               contype=ENV_CONTYPE, conaffinity=OBJECT_BITS)
        world.add_light(name="key", pos=layout.to_world(np.array([0.5, -1.0, 3.0])),
                        dir=layout.to_world(np.array([-0.2, 0.4, -1.0])), castshadow=False, diffuse=[0.7, 0.7, 0.7])
        world.add_light(name="fill", pos=layout.to_world(np.array([-1.0, 1.5, 2.5])),
                        dir=layout.to_world(np.array([0.5, -0.6, -1.0])), castshadow=False,
                        diffuse=[0.35, 0.35, 0.38])
        center = layout.to_world(np.array([layout.table_center[0], 0.0, layout.table_top]))
        eye = center + layout.to_world(np.array([1.3, -1.3, 0.9]))
        world.add_camera(name="overview", pos=eye, xyaxes=_look_at_xyaxes(eye, center), fovy=50)
        for colour in self.colours:
            cube = world.add_body(name=f"{colour}_cube", pos=[0, 0, -1])
            cube.add_freejoint(name=f"{colour}_cube")
            cube.mass = CUBE_MASS
            cube.inertia = [CUBE_MASS * CUBE_SIZE**2 / 6] * 3
            cube.explicitinertial = True
            cube.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_SIZE / 2] * 3, rgba=COLOURS[colour],
                          contype=OBJECT_BITS, conaffinity=OBJECT_BITS, friction=[0.8, 0.005, 0.0001])
        tray = world.add_body(name="tray", pos=PARKED, mocap=True)
        half, wall = TRAY_SIZE / 2, 0.005
        tray.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[half, half, TRAY_FLOOR / 2], pos=[0, 0, TRAY_FLOOR / 2],
                      rgba=TRAY_RGBA, contype=ENV_CONTYPE, conaffinity=OBJECT_BITS, friction=[0.8, 0.005, 0.0001])
        for x, y, sx, sy in ((half - wall, 0, wall, half), (wall - half, 0, wall, half),
                             (0, half - wall, half, wall), (0, wall - half, half, wall)):
            tray.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx, sy, TRAY_WALL / 2], pos=[x, y, TRAY_WALL / 2],
                          rgba=TRAY_RGBA, contype=ENV_CONTYPE, conaffinity=OBJECT_BITS)
        can = world.add_body(name="distractor", pos=PARKED, mocap=True)
        can.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[DISTRACTOR_RADIUS, DISTRACTOR_HEIGHT / 2, 0],
                     pos=[0, 0, DISTRACTOR_HEIGHT / 2], rgba=DISTRACTOR_RGBA, contype=ENV_CONTYPE,
                     conaffinity=OBJECT_BITS)
        for camera in self.embodiment.cameras.values():
            mount = spec.body(body_name(camera.frame))
            # The link looks along +x with +z up; a MuJoCo camera looks along -z with +y up.
            mount.add_camera(name=f"camera/{camera.name}", xyaxes=[0, -1, 0, 0, 0, 1], fovy=camera.fovy_deg)
        self._add_actuators(spec)
        return spec

    def _add_actuators(self, spec: mujoco.MjSpec) -> None:
        for group in self.embodiment.commanded_groups:
            for i, joint in enumerate(group.joints):
                actuator = spec.add_actuator(name=f"{group.name}/{joint}", target=joint,
                                             trntype=mujoco.mjtTrn.mjTRN_JOINT)
                if group.mode == "effort":
                    actuator.set_to_motor()
                    limit = group.effort_limit[i]
                    actuator.ctrlrange = [-limit, limit]
                    actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
                elif group.mode == "position":
                    actuator.set_to_position(kp=group.kp[i], kv=group.kd[i])
                    if group.lower[i] < group.upper[i]:  # not continuous, nor a <limit> without a range
                        actuator.ctrlrange = [group.lower[i], group.upper[i]]
                        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
                else:
                    actuator.set_to_velocity(kv=group.kp[i])
                    actuator.ctrlrange = [-group.velocity_limit[i], group.velocity_limit[i]]
                    actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
                if group.effort_limit[i] > 0:
                    actuator.forcerange = [-group.effort_limit[i], group.effort_limit[i]]
                    actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        for group in self.embodiment.delegated_groups:
            for joint in group.joints:
                actuator = spec.add_actuator(name=f"balance_stack/{joint}", target=joint,
                                             trntype=mujoco.mjtTrn.mjTRN_JOINT)
                actuator.set_to_position(kp=LEG_HOLD_KP, kv=LEG_HOLD_KV)
        if self.planar_base:
            for name, kv in zip(("base_x", "base_y", "base_yaw"), BASE_KV):
                actuator = spec.add_actuator(name=f"base/{name}", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
                actuator.set_to_velocity(kv=kv)

    def _index(self) -> None:
        model = self.model
        description = self.embodiment.description
        self.joint_names = [j.name for j in description.movable_joints]
        self.qpos_adr = {n: int(model.jnt_qposadr[model.joint(n).id]) for n in self.joint_names}
        self.dof_adr = {n: int(model.jnt_dofadr[model.joint(n).id]) for n in self.joint_names}
        self._joint_qpos = np.array([self.qpos_adr[n] for n in self.joint_names])
        self._joint_dof = np.array([self.dof_adr[n] for n in self.joint_names])
        self.actuators = {
            group.name: np.array([model.actuator(f"{group.name}/{j}").id for j in group.joints])
            for group in self.embodiment.commanded_groups
        }
        groups = self.embodiment.groups.values()
        self.group_qpos = {g.name: np.array([self.qpos_adr[j] for j in g.joints]) for g in groups}
        self.group_dof = {g.name: np.array([self.dof_adr[j] for j in g.joints]) for g in groups}
        self.base_actuators = (np.array([model.actuator(f"base/{n}").id for n in ("base_x", "base_y", "base_yaw")])
                               if self.planar_base else np.array([], dtype=int))
        self.base_qpos = (np.array([model.jnt_qposadr[model.joint(n).id] for n in ("base_x", "base_y", "base_yaw")])
                          if self.planar_base else np.array([], dtype=int))
        self.base_dof = (np.array([model.jnt_dofadr[model.joint(n).id] for n in ("base_x", "base_y", "base_yaw")])
                         if self.planar_base else np.array([], dtype=int))
        self.cube_qpos = {c: int(model.jnt_qposadr[model.joint(f"{c}_cube").id]) for c in self.colours}
        self.cube_body = {c: model.body(f"{c}_cube").id for c in self.colours}
        self.cube_dof = {c: int(model.jnt_dofadr[model.joint(f"{c}_cube").id]) for c in self.colours}
        self.tray_mocap = int(model.body_mocapid[model.body("tray").id])
        self.tray: np.ndarray | None = None  # [m] the tray floor's centre in the world; None: no room for it
        self.distractor_mocap = int(model.body_mocapid[model.body("distractor").id])
        self.distractor: np.ndarray | None = None  # [m] the can's base centre on the table; None: not in the scene
        self.ee_body = {arm.name: model.body(body_name(arm.ee_frame)).id for arm in self.arms}
        self.robot_geoms = {g for g in range(model.ngeom) if model.geom_contype[g] == ROBOT_CONTYPE}
        self.cameras = {name: model.camera(f"camera/{name}").id for name in self.embodiment.cameras}

    def _set_home(self, model, data, rng: np.random.Generator | None) -> None:
        """Home pose (plus seeded noise on commanded joints), mimic joints consistent."""
        for group in self.embodiment.groups.values():
            home = group.home.copy()
            if rng is not None and not group.delegated:
                home = np.clip(home + rng.uniform(-HOME_NOISE, HOME_NOISE, home.shape), group.lower, group.upper)
            for joint, value in zip(group.joints, home):
                data.qpos[model.jnt_qposadr[model.joint(joint).id]] = value
        for joint in self.embodiment.description.movable_joints:
            if joint.mimic is not None:
                primary, multiplier, offset = joint.mimic
                value = data.qpos[model.jnt_qposadr[model.joint(primary).id]]
                data.qpos[model.jnt_qposadr[model.joint(joint.name).id]] = multiplier * value + offset

    # -- episodes ---------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """The seeded initial state: robot near home, cubes at reachable, separate places."""
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        self._set_home(self.model, self.data, rng)
        self.data.ctrl[:] = 0.0
        for group in self.embodiment.commanded_groups:
            if group.mode == "position":
                self.data.ctrl[self.actuators[group.name]] = self.data.qpos[self.group_qpos[group.name]]
        for group in self.embodiment.delegated_groups:
            for joint in group.joints:
                self.data.ctrl[self.model.actuator(f"balance_stack/{joint}").id] = self.data.qpos[self.qpos_adr[joint]]
        for attempt in range(SCENE_TRIES):  # a scene whose tray serves every cube (two-armed robots may miss)
            placed: list[np.ndarray] = []
            self.unreached = []
            draw = rng if attempt == 0 else np.random.default_rng([self.seed, 9, attempt])
            for colour in self.colours:
                placed.append(self._place_cube(colour, draw, placed))
            if self._place_tray(np.random.default_rng([self.seed, 7]), placed) or self.unreached:
                break
        self.place_distractor(None)
        mujoco.mj_forward(self.model, self.data)

    def _place_tray(self, rng: np.random.Generator, cubes: list[np.ndarray]) -> bool:
        """The tray on a free place, drawn from `rng` among the best; None when none is free.

        Best: the most cubes an arm reaching over the tray also picks up (a cube only the other
        hand reaches would have to change hands), then the most arms reaching over it. Returns
        whether it serves every cube (or there is no room for it at all).
        """
        grasps = [{arm.name for arm in self.arms if self.reaches(arm, cube)} for cube in cubes]
        free = [(place, arms) for place, arms in self._tray_places
                if all(np.linalg.norm(place[:2] - p[:2]) >= TRAY_CLEARANCE for p in cubes)]
        scores = [(sum(bool(arms & grasp) for grasp in grasps), len(arms)) for _, arms in free]
        best = max(scores, default=(0, 0))
        candidates = [place for (place, arms), score in zip(free, scores) if score == best and arms]
        self.tray = candidates[int(rng.integers(len(candidates)))] if candidates else None
        self.data.mocap_pos[self.tray_mocap] = self.tray if self.tray is not None else PARKED
        return self.tray is None or best[0] == len(cubes)

    @cached_property
    def _tray_places(self) -> list[tuple[np.ndarray, set[str]]]:
        """Places for the tray on a 4 cm grid over the cubes' region (world), with the arms that reach over each."""
        lift = np.array([0.0, 0.0, TRAY_FLOOR + CUBE_SIZE + APPROACH_HEIGHT])
        low, high = self.layout.sample_low, self.layout.sample_high
        grid = [np.linspace(lo, hi, max(2, int((hi - lo) / 0.04) + 1)) for lo, hi in zip(low, high)]
        places = [np.append(self.layout.to_world(np.array([x, y])), self.layout.table_top)
                  for x in grid[0] for y in grid[1]]
        return [(place, {arm.name for arm in self.arms if self.reaches(arm, place + lift)}) for place in places]

    @cached_property
    def table_in_reach(self) -> bool:
        """Whether an arm reaches any of a 5 x 5 grid over the cube region with its tool pointing down."""
        if not self.arms:
            return False
        mujoco.mj_forward(self.model, self.data)  # the root's pose, for reaching_arm
        z = self.layout.table_top + CUBE_SIZE / 2
        grid = np.linspace(self.layout.sample_low, self.layout.sample_high, 5)
        return any(self.reaching_arm(np.append(self.layout.to_world(np.array([x, y])), z)) is not None
                   for x in grid[:, 0] for y in grid[:, 1])

    def _place_cube(self, colour: str, rng: np.random.Generator, placed: list[np.ndarray]) -> np.ndarray:
        """A free place on the table that an arm reaches with room to push, or just reaches.

        Failing that (a drafted home that keeps every tool away from the table), any free place, from
        a stream of its own so that a seed gives the same scene whatever was tried before; the
        cube's colour goes into `unreached`, and reach episodes with it fail. The robot comes up.
        """
        rooms = (PUSH_ROOM, REACH_ROOM) if self.table_in_reach else ()
        for room in rooms:
            position = self._free_place(colour, rng, placed, room)
            if position is not None:
                return position
        if self.arms:
            self.unreached.append(colour)
        position = self._free_place(colour, np.random.default_rng([self.seed, 3, len(placed)]), placed, ())
        if position is None:
            raise SceneError(f"{self.embodiment.path}: no free place on the table for the {colour} cube "
                             f"(seed {self.seed}): the robot covers it")
        return position

    def _free_place(self, colour: str, rng: np.random.Generator, placed: list[np.ndarray],
                    room: tuple[np.ndarray, ...], tries: int = 500) -> np.ndarray | None:
        """Puts the cube at a place clear of the others and the robot, from which an arm reaches `room`."""
        adr = self.cube_qpos[colour]
        z = self.layout.table_top + CUBE_SIZE / 2
        for _ in range(tries):
            xy = self.layout.to_world(rng.uniform(self.layout.sample_low, self.layout.sample_high))
            yaw = rng.uniform(-CUBE_TURN, CUBE_TURN)
            position = np.array([xy[0], xy[1], z])
            if any(np.linalg.norm(position[:2] - p[:2]) < CUBE_SPACING for p in placed):
                continue
            self.data.qpos[adr:adr + 3] = position
            self.data.qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            mujoco.mj_forward(self.model, self.data)
            if self.touching_robot(colour) or not all(
                self.reaching_arm(position + self.layout.turn @ offset) is not None for offset in room
            ):
                continue
            return position
        return None

    def place_distractor(self, position: np.ndarray | None) -> bool:
        """Stand the can on the table at `position` (world, its base centre) if that is a fair place, or park it (None).

        Fair: over the cubes' region, clear of every cube and the tray. False, and the can where it
        was, otherwise.
        """
        room = DISTRACTOR_RADIUS + CUBE_SIZE
        if position is not None and not self.clear(position, [(self.cube_pose(c)[0], room) for c in self.colours]
                                                   + [(self.tray, TRAY_SIZE / 2 + room)]):
            return False
        self.distractor = None if position is None else np.asarray(position, dtype=float)
        self.data.mocap_pos[self.distractor_mocap] = PARKED if position is None else position
        mujoco.mj_forward(self.model, self.data)
        return True

    def clear(self, position: np.ndarray, rooms: list[tuple[np.ndarray | None, float]]) -> bool:
        """Whether a world point lies over the cubes' region, at least `room` (xy) from each (centre, room).

        A centre of None (an object not in the scene) is no obstacle.
        """
        work = self.layout.turn[:2, :2].T @ position[:2]
        return bool(np.all(work >= self.layout.sample_low) and np.all(work <= self.layout.sample_high)) and all(
            centre is None or np.linalg.norm(position[:2] - centre[:2]) >= room for centre, room in rooms)

    def move_cube(self, colour: str, position: np.ndarray, clearance: float) -> bool:
        """Put a cube, at rest, at `position` (world) on the table if that is a fair place for it.

        Fair: over the cubes' region, `clearance` from every other cube's centre, off the tray and
        the can, not touching the robot, reached by an arm. False, and the cube where it was, otherwise.
        """
        rooms = [(self.cube_pose(c)[0], clearance) for c in self.colours if c != colour]
        if not self.clear(position, rooms + [(self.tray, TRAY_SIZE / 2 + CUBE_SIZE),
                                             (self.distractor, DISTRACTOR_RADIUS + CUBE_SIZE)]):
            return False
        adr = self.cube_qpos[colour]
        dof = self.cube_dof[colour]
        saved = self.data.qpos[adr:adr + 7].copy()
        self.data.qpos[adr:adr + 3] = position
        self.data.qvel[dof:dof + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)
        if self.touching_robot(colour) or self.reaching_arm(position) is None:
            self.data.qpos[adr:adr + 7] = saved
            mujoco.mj_forward(self.model, self.data)
            return False
        return True

    def touching_robot(self, colour: str) -> bool:
        """Whether the robot touches the cube now (holds it, or pushes it)."""
        body = self.cube_body[colour]
        for contact in self.data.contact[: self.data.ncon]:
            geoms = (contact.geom1, contact.geom2)
            bodies = {self.model.geom_bodyid[g] for g in geoms}
            if body in bodies and any(g in self.robot_geoms for g in geoms):
                return True
        return False

    def reach_target(self, cube_position: np.ndarray) -> np.ndarray:
        """Where the tool goes to reach a cube: above its top face, in the world frame."""
        return cube_position + np.array([0.0, 0.0, CUBE_SIZE / 2 + REACH_CLEARANCE])

    def reaching_arm(self, cube_position: np.ndarray) -> JointGroup | None:
        """The arm whose tool reaches above the cube pointing down (nearest arm first)."""
        target = self.reach_target(cube_position)
        for arm in sorted(self.arms, key=lambda a: np.linalg.norm(self.ee_position(a.name) - cube_position)):
            if self.reaches(arm, target):
                return arm
        return None

    def reaches(self, arm: JointGroup, tool: np.ndarray) -> bool:
        """Whether `arm`, from home, gets its tool to `tool` (world frame) pointing down."""
        target = (np.linalg.inv(self.root_pose()) @ np.append(tool, 1.0))[:3]
        _, residual = self.ik[arm.name].solve(self._home_vector(self.joint_vector()), target, TOOL_DOWN,
                                              tolerance=0.005)
        return residual < 0.005

    def pose_arm(self, arm: JointGroup, tool: np.ndarray) -> bool:
        """Put `arm` at rest with its tool at `tool` (world frame) pointing down, solved from home.

        False, and the state as it was, when the tool cannot get there or the robot would touch a
        cube.
        """
        world_to_root = np.linalg.inv(self.root_pose())
        target = (world_to_root @ np.append(tool, 1.0))[:3]
        q = self.joint_vector()
        solution, residual = self.ik[arm.name].solve(self._home_vector(q), target, TOOL_DOWN, tolerance=0.005)
        if residual >= 0.005:
            return False
        index = self.embodiment.kinematics.index(arm.joints)
        saved = self.data.qpos.copy(), self.data.ctrl.copy()
        for joint, value in zip(arm.joints, solution[index]):
            self.data.qpos[self.qpos_adr[joint]] = value
        self.data.qvel[:] = 0.0
        if arm.mode == "position":
            self.data.ctrl[self.actuators[arm.name]] = solution[index]
        mujoco.mj_forward(self.model, self.data)
        if any(self.touching_robot(colour) for colour in self.colours):
            self.data.qpos[:], self.data.ctrl[:] = saved
            mujoco.mj_forward(self.model, self.data)
            return False
        return True

    def _home_vector(self, q: np.ndarray) -> np.ndarray:
        home = q.copy()
        for group in self.embodiment.commanded_groups:
            home[self.embodiment.kinematics.index(group.joints)] = group.home
        return home

    # -- state ------------------------------------------------------------------------------
    def joint_vector(self) -> np.ndarray:
        """Positions in Kinematics.joint_names order (independent movable joints)."""
        names = self.embodiment.kinematics.joint_names
        return np.array([self.data.qpos[self.qpos_adr[n]] for n in names])

    def joint_velocity_vector(self) -> np.ndarray:
        names = self.embodiment.kinematics.joint_names
        return np.array([self.data.qvel[self.dof_adr[n]] for n in names])

    def joint_states(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(names, positions, velocities, efforts) of every movable URDF joint."""
        return (self.joint_names, self.data.qpos[self._joint_qpos].copy(), self.data.qvel[self._joint_dof].copy(),
                self.data.qfrc_actuator[self._joint_dof].copy())

    def root_pose(self) -> np.ndarray:
        """(4, 4) pose of the robot's root link in the world."""
        body = self.model.body(body_name(self.embodiment.description.root)).id
        pose = np.eye(4)
        pose[:3, :3] = self.data.xmat[body].reshape(3, 3)
        pose[:3, 3] = self.data.xpos[body]
        return pose

    def base_velocity(self) -> np.ndarray:
        """(vx, vy, wz) of a planar base in its own frame; zeros for a fixed robot."""
        if not self.planar_base:
            return np.zeros(3)
        vx, vy, wz = self.data.qvel[self.base_dof]
        yaw = self.data.qpos[self.base_qpos[2]]
        c, s = np.cos(yaw), np.sin(yaw)
        return np.array([c * vx + s * vy, -s * vx + c * vy, wz])

    def ee_position(self, arm: str) -> np.ndarray:
        return self.data.xpos[self.ee_body[arm]].copy()

    def cube_pose(self, colour: str) -> tuple[np.ndarray, np.ndarray]:
        """(position, quaternion w-x-y-z) of a cube in the world."""
        adr = self.cube_qpos[colour]
        return self.data.qpos[adr:adr + 3].copy(), self.data.qpos[adr + 3:adr + 7].copy()

    def cube_velocity(self, colour: str) -> np.ndarray:
        """(3,) [m/s] a cube's linear velocity in the world."""
        adr = self.cube_dof[colour]
        return self.data.qvel[adr:adr + 3].copy()

    def state(self) -> np.ndarray:
        """Full physics state (time, qpos, qvel, act, ctrl): equal states mean equal worlds."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return state


def _geom_corners(model: mujoco.MjModel, data: mujoco.MjData) -> dict[int, np.ndarray]:
    """World-frame corners of each robot geom's bounding box (visual ones too: wheels touch the floor)."""
    corners = {}
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    for geom in range(model.ngeom):
        center, half = model.geom_aabb[geom][:3], model.geom_aabb[geom][3:]
        local = center + signs * half
        corners[geom] = data.geom_xpos[geom] + local @ data.geom_xmat[geom].reshape(3, 3).T
    return corners


def _look_at_xyaxes(eye: np.ndarray, target: np.ndarray) -> list[float]:
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0, 0, 1])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return [*right, *up]


def rotation_z(angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` [rad] about z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def work_heading(embodiment: Embodiment) -> float:
    """[rad] the work frame's yaw in the robot's root frame: the quarter turn nearest the hands.

    The direction from each arm's first joint to its tool at home, summed over the arms, rounded to
    a multiple of pi/2 so that the table stays square to the robot: 0 (ahead) for most robots, the
    side of a Stretch, whose arm reaches out sideways from its mast; 0 without an arm.
    """
    kinematics = embodiment.kinematics
    q = np.zeros(len(kinematics.joint_names))
    for group in embodiment.groups.values():
        q[kinematics.index(group.joints)] = group.home
    direction = np.zeros(2)
    for arm in (g for g in embodiment.commanded_groups if g.kind == "arm"):
        shoulder = kinematics.frame_pose(q, embodiment.description.joints[arm.joints[0]].child)[:2, 3]
        direction += kinematics.frame_pose(q, arm.ee_frame)[:2, 3] - shoulder
    if np.linalg.norm(direction) < 1e-3:
        return 0.0
    return float(np.pi / 2 * np.round(np.arctan2(direction[1], direction[0]) / (np.pi / 2)))
