"""Action spaces end to end without DDS, the robot simulated in lockstep with its controller.

A scripted server answers in one space over `vla-ros serve`'s protocol, `remote` reads the space
from its metadata, the adapter turns the chunks into joint positions, and the controller core
drives the MuJoCo robot.

The scripted server is closed-loop like a trained policy: from the observed state it answers the
actions that bring the robot back onto a smooth reference path (tool poses for the ee spaces,
joint positions for the joint spaces), so the robot's tool or joints are compared with the path.
"""
import asyncio
import dataclasses
import threading

import numpy as np
import pinocchio as pin
import pytest

from vla_ros.control.chunk import JointChunk
from vla_ros.control.controller import Controller, ControllerConfig
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.policy import ActionChunk, ActionSpace, ActionSpaceError, GripperMap, Observation, Policy, describe
from vla_ros.policy.remote import RemotePolicy
from vla_ros.policy.server import PolicyServer, server_metadata
from vla_ros.policy.spaces import ChunkAdapter
from vla_ros.sim.episode import step
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.world import World

HORIZON, DT = 10, 0.1  # [s] chunks of 1 s, asked for every REQUEST_S
REQUEST_S = 0.25
SECONDS = 2.0  # the reference path's length [s]; the run lasts TAIL_S longer
TAIL_S = 0.2
TRAVEL = np.array([0.06, -0.04, -0.05])  # [m] the tool's travel in the root frame
TURN = np.array([0.0, 0.0, 0.3])  # [rad] the tool's turn about the root z axis
JOINT_TRAVEL = 0.25  # [rad] every arm joint's travel, signs alternating


def ease(t: np.ndarray) -> np.ndarray:
    """0 -> 1 over SECONDS with zero speed at both ends."""
    return (1 - np.cos(np.pi * np.clip(np.asarray(t) / SECONDS, 0.0, 1.0))) / 2


class Scripted(Policy):
    """Answers in `space` the actions that follow the reference path from the observed state."""

    def __init__(self, embodiment, space: ActionSpace, start_state: np.ndarray):
        self.embodiment, self.space = embodiment, space
        self.io = EmbodimentIO(embodiment)
        self.adapter = ChunkAdapter(embodiment, space)
        self.slot = {name: i for i, name in enumerate(self.io.names)}
        self.start = np.asarray(start_state, dtype=float)
        self.arms = [p.group for p in self.adapter.parts if p.kind == "ee"]
        self.start_poses = {arm.name: tool_pose(embodiment, self.start, arm) for arm in self.arms}

    @property
    def metadata(self) -> dict:
        return describe(self.embodiment, "scripted", HORIZON, DT, cameras={}, space=self.space)

    def joints_at(self, t: np.ndarray) -> np.ndarray:
        """(len(t), D) the reference joint path: each arm joint travels JOINT_TRAVEL, signs alternating."""
        path = np.tile(self.start, (len(t), 1))
        for part in self.adapter.parts:
            if part.kind == "joint" and part.group.kind == "arm":
                signs = (-1.0) ** np.arange(len(part.targets))
                path[:, part.targets] += ease(t)[:, None] * JOINT_TRAVEL * signs
        return path

    def pose_at(self, arm, t: float) -> np.ndarray:
        start = self.start_poses[arm.name]
        pose = start.copy()
        pose[:3, 3] += ease(t) * TRAVEL
        pose[:3, :3] = pin.exp3(ease(t) * TURN) @ start[:3, :3]
        return pose

    def infer(self, observation, prefix=None) -> ActionChunk:
        t, state = observation.stamp, np.asarray(observation.state, dtype=float)
        times = t + DT * np.arange(1, HORIZON + 1)
        actions = np.zeros((HORIZON, self.adapter.width))
        for part in self.adapter.parts:
            columns = slice(part.start, part.stop)
            if part.kind == "ee":
                actions[:, columns] = self.ee_columns(part.group, state, t, times)
            elif part.kind == "joint":
                path = self.joints_at(times)[:, part.targets]
                before = np.vstack([state[part.targets], path[:-1]])
                actions[:, columns] = {"joint_position": path, "joint_delta": path - state[part.targets],
                                       "joint_velocity": (path - before) / DT}[self.space.name]
            elif part.kind == "gripper":
                actions[:, columns] = state[part.targets]
        return ActionChunk(actions, DT, t, self.space)

    def ee_columns(self, arm, state: np.ndarray, t: float, times: np.ndarray) -> np.ndarray:
        targets = [self.pose_at(arm, s) for s in times]
        if self.space.name == "ee_pose":
            return np.array([np.concatenate([p[:3, 3], pin.log3(p[:3, :3])]) for p in targets])
        previous = [tool_pose(self.embodiment, state, arm), *targets[:-1]]
        return np.array([np.concatenate([b[:3, 3] - a[:3, 3], pin.log3(b[:3, :3] @ a[:3, :3].T)])
                         for a, b in zip(previous, targets)])


def tool_pose(embodiment, state: np.ndarray, arm) -> np.ndarray:
    io = EmbodimentIO(embodiment)
    slot = {name: i for i, name in enumerate(io.names)}
    q = np.array([state[slot[n]] if n in slot else 0.0 for n in embodiment.kinematics.joint_names])
    return embodiment.kinematics.frame_pose(q, arm.ee_frame)


class Served:
    """A PolicyServer of one scripted policy on a free local port, in a thread."""

    def __init__(self, policy: Policy, **metadata):
        stated = {**server_metadata(policy, policy.start, "follow the path"), **metadata}
        self.server = PolicyServer(policy, stated, host="127.0.0.1", port=0)
        ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(lambda p: (
            setattr(self, "port", p), ready.set()))), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the server did not start"

    def close(self) -> None:
        self.server.stop()
        self.thread.join(5)


@pytest.fixture(scope="module")
def worlds():
    """One MuJoCo world per shipped body with an arm, reused by the spaces (reset per run)."""
    return {}


def run(worlds, name: str, space: ActionSpace) -> dict:
    """Follow the scripted server for SECONDS + TAIL_S; returns measured and reference paths."""
    embodiment = load_embodiment(name)
    world = worlds.get(name) or worlds.setdefault(name, World(embodiment))
    world.reset(0)
    # The humanoid's upper body would blend in over its first second: not what is measured here.
    hardware, controller = SimHardware(world), Controller(embodiment, ControllerConfig(upper_body_ramp_s=0.0))
    io = EmbodimentIO(embodiment)
    index = embodiment.kinematics.index(io.joints)
    joint_columns = [io.names.index(j) for j in io.joints]
    start = io.state(world.joint_vector()[index])
    policy = Scripted(embodiment, space, start)
    served = Served(policy)
    remote = RemotePolicy(embodiment, f"ws://127.0.0.1:{served.port}", timeout_s=10.0)
    control_dt = 1.0 / embodiment.control_rate_hz
    substeps = max(1, round(control_dt / world.model.opt.timestep))
    every = round(REQUEST_S / control_dt)
    lower = np.concatenate([g.lower for g in controller.groups])
    upper = np.concatenate([g.upper for g in controller.groups])
    record = {"t": [], "q": [], "commanded": [], "adapters": []}
    try:
        for k in range(round((SECONDS + TAIL_S) / control_dt)):
            now = k * control_dt
            q, qd = world.joint_vector(), world.joint_velocity_vector()
            controller.update_state(q, qd, now)
            if k % every == 1:  # from the second period: the controller has started from a state
                observation_state = io.state(q[index])
                chunk = remote.infer(_observation(observation_state, now))
                assert chunk.action_space == space, "remote took the space from the server's metadata"
                adapter = ChunkAdapter(embodiment, chunk.action_space)
                targets = adapter.targets(chunk.actions, chunk.dt, observation_state)
                record["adapters"].append(adapter)
                controller.submit(JointChunk(now, io.joints, chunk.times, targets[:, joint_columns]), now)
            out = controller.step(now, control_dt)
            for group, command in out.commands.items():
                if command is not None:
                    hardware.command(group, command, float(world.data.time))
            if controller.state != "waiting":
                record["commanded"].append(out.q_command.copy())
            step(world, hardware, substeps, control_dt)
            record["t"].append(now + control_dt)
            record["q"].append(world.joint_vector())
    finally:
        remote.close()
        served.close()
    commanded = np.array(record["commanded"])
    assert np.all(commanded >= lower - 1e-9) and np.all(commanded <= upper + 1e-9), "a command left the limits"
    return {"embodiment": embodiment, "policy": policy, "t": np.array(record["t"]), "q": np.array(record["q"]),
            "adapters": record["adapters"], "index": index}


def _observation(state: np.ndarray, stamp: float) -> Observation:
    return Observation({}, state.astype(np.float32), "follow the path", stamp)


BODIES = ("arm7", "mobile_manipulator", "humanoid_upper")


@pytest.mark.slow
@pytest.mark.parametrize("name", BODIES)
@pytest.mark.parametrize("space", ["ee_delta", "ee_pose"])
def test_the_tool_follows_a_path_commanded_in_end_effector_space(worlds, name, space):
    """Every arm's tool stays within 1 cm of the commanded path (6 cm travel, 0.3 rad turn) over 2 s."""
    result = run(worlds, name, ActionSpace(space))
    embodiment, policy = result["embodiment"], result["policy"]
    io = EmbodimentIO(embodiment)
    for arm in policy.arms:
        errors = []
        for t, q in zip(result["t"], result["q"]):
            reached = tool_pose(embodiment, io.state(q[result["index"]]), arm)[:3, 3]
            errors.append(np.linalg.norm(reached - policy.pose_at(arm, t)[:3, 3]))
        assert max(errors) < 0.01, f"{arm.name}: tool {max(errors) * 100:.2f} cm from the path"
        assert np.linalg.norm(tool_pose(embodiment, io.state(result["q"][-1][result["index"]]), arm)[:3, 3]
                              - policy.start_poses[arm.name][:3, 3]) > 0.08, "the tool did not travel"
    assert sum(a.clamped_steps for a in result["adapters"]) == 0, "a reachable path needed no clamping"


@pytest.mark.slow
@pytest.mark.parametrize("name", BODIES)
@pytest.mark.parametrize("space", ["joint_velocity", "joint_delta", "joint_position"])
def test_the_joints_follow_a_path_commanded_in_joint_space(worlds, name, space):
    """Arm joints stay within 0.02 rad of the integral of the commanded velocities (or the deltas, positions)."""
    result = run(worlds, name, ActionSpace(space))
    policy, io = result["policy"], EmbodimentIO(result["embodiment"])
    arm_slots = np.concatenate([p.targets for p in policy.adapter.parts
                                if p.kind == "joint" and p.group.kind == "arm"])
    measured = np.array([io.state(q[result["index"]]) for q in result["q"]])[:, arm_slots]
    reference = policy.joints_at(result["t"])[:, arm_slots]
    error = np.abs(measured - reference).max()
    assert error < 0.02, f"joints {error:.4f} rad from the path"
    assert np.abs(measured[-1] - reference[0]).min() > 0.2, "the joints did not travel"


def test_a_space_that_does_not_exist_is_one_clear_error():
    """A backend naming an unknown space gets the list of spaces and a did-you-mean."""
    with pytest.raises(ActionSpaceError, match=r"no action space 'ee_deltas' \(did you mean 'ee_delta'\?\); spaces: "):
        ActionSpace("ee_deltas")


def test_a_server_naming_a_space_that_does_not_exist_is_one_clear_error():
    """The `remote` backend refuses a server stating an unknown action space, and names the spaces."""
    arm7 = load_embodiment("arm7")
    home = EmbodimentIO(arm7).home
    served = Served(Scripted(arm7, ActionSpace(), home), action_space={"name": "ee_deltas"})
    remote = RemotePolicy(arm7, f"ws://127.0.0.1:{served.port}", timeout_s=10.0)
    try:
        with pytest.raises(ActionSpaceError, match=r"no action space 'ee_deltas' .*; spaces: joint_position, "):
            remote.infer(_observation(home, 0.0))
        assert remote.metadata["action_space"] == {"name": "ee_deltas"}, "metadata shows what the server stated"
    finally:
        remote.close()
        served.close()


def test_an_ee_space_on_a_body_without_an_end_effector_frame_is_one_clear_error():
    """An arm without ee_frame cannot take tool poses: the error names the arm and the key to set."""
    arm7 = load_embodiment("arm7")
    arm7.groups["arm"] = dataclasses.replace(arm7.groups["arm"], ee_frame=None)
    with pytest.raises(ActionSpaceError, match="arm 'arm' of arm7 has none: set groups.arm.ee_frame"):
        ChunkAdapter(arm7, ActionSpace("ee_delta"))


def test_a_chunk_whose_width_fits_no_space_is_one_clear_error():
    """A chunk of the wrong width is refused with the columns the space takes."""
    adapter = ChunkAdapter(load_embodiment("arm7"), ActionSpace("ee_delta"))
    with pytest.raises(ActionSpaceError, match=r"\(4, 9\) fits no action space .* arm\[0:6\] gripper\[6:7\] "
                                               r"takes \(H, 7\)"):
        adapter.targets(np.zeros((4, 9)), 0.1, EmbodimentIO(load_embodiment("arm7")).home)


def test_gripper_values_map_onto_the_joint_range_closed_at_the_limit_farther_from_home():
    """DROID's 0 open / 1 closed with a 0.5 threshold, LIBERO's -1 / +1 continuous."""
    arm7 = load_embodiment("arm7")
    gripper = arm7.groups["gripper"]
    io = EmbodimentIO(arm7)
    closed = gripper.lower[0] if abs(gripper.home[0] - gripper.lower[0]) > abs(gripper.upper[0] - gripper.home[0]) \
        else gripper.upper[0]
    opened = gripper.upper[0] + gripper.lower[0] - closed
    slot = io.names.index(gripper.joints[0])
    droid = ChunkAdapter(arm7, ActionSpace("joint_velocity", ("arm", "gripper"),
                                           gripper=GripperMap(0.0, 1.0, 0.5)))
    out = droid.targets(np.array([[0.0] * 7 + [0.4], [0.0] * 7 + [0.6]]), 0.1, io.home)
    assert out[:, slot] == pytest.approx([opened, closed])
    libero = ChunkAdapter(arm7, ActionSpace("ee_delta", gripper=GripperMap(-1.0, 1.0)))
    out = libero.targets(np.array([[0.0] * 6 + [0.0]]), 0.1, io.home)
    assert out[0, slot] == pytest.approx((opened + closed) / 2)
