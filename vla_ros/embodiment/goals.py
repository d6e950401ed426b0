"""Goals of the built-in VLA: where the end effector goes next, from the demonstrations (hindsight).

A sample's goal is where the end effector was commanded to at the episode's next keypose (where
the gripper next closes or opens, else the end), in the robot's root frame, or seen from the end
effector where the sample's state puts it. On a body with several arms the end effector is the
one that acts: the arm whose tool moves furthest on the way to that keypose (a humanoid reaches
with the hand nearer the cube). Plain kinematics: no ROS, no datasets.
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment.config import END_EFFECTOR_KINDS
from vla_ros.embodiment.embodiment import Embodiment
from vla_ros.embodiment.vectors import EmbodimentIO


def goal_frames(embodiment: Embodiment) -> list[str]:
    """The frames goals can be positions of: the end effector of each arm that names one."""
    return [g.ee_frame for g in embodiment.commanded_groups if g.kind == "arm" and g.ee_frame]


def goal_frame(embodiment: Embodiment) -> str | None:
    """The first goal frame (None without one): on a one-armed body, the frame of every goal."""
    return next(iter(goal_frames(embodiment)), None)


def goal_frame_pose(state: np.ndarray, embodiment: Embodiment, io: EmbodimentIO, frame: str | None = None
                    ) -> np.ndarray:
    """(4, 4) pose of a goal frame (the first unless named) in the root frame where `state` (D) puts it."""
    return embodiment.kinematics.frame_pose(io.joint_vector(state), frame or goal_frame(embodiment))


def goals_in_tool(goals: np.ndarray, states: np.ndarray, embodiment: Embodiment, frames: np.ndarray
                  ) -> np.ndarray:
    """(N, 3) [m] root-frame goals, each seen from its goal frame (`frames`: N goal_frames indices) at its state."""
    io = EmbodimentIO(embodiment)
    names = goal_frames(embodiment)
    seen = np.zeros_like(goals, dtype=np.float32)
    for i, (goal, state, frame) in enumerate(zip(goals, states, frames)):
        pose = goal_frame_pose(state, embodiment, io, names[frame])
        seen[i] = pose[:3, :3].T @ (goal - pose[:3, 3])
    return seen


def goal_in_root(goal: np.ndarray, state: np.ndarray, embodiment: Embodiment, io: EmbodimentIO) -> np.ndarray:
    """(3,) [m] a goal seen from the first goal frame where `state` (D,) puts it, in the root frame."""
    pose = goal_frame_pose(state, embodiment, io)
    return pose[:3, :3] @ goal + pose[:3, 3]


def hindsight_goals(actions: np.ndarray, embodiment: Embodiment) -> tuple[np.ndarray, np.ndarray] | None:
    """Each sample's goal (N, 3) [m] in the root frame, and the goal frame that reaches it (N, goal_frames indices).

    A goal is the acting frame's position at the sample's next keypose.
    The next keypose is where the commanded joints are when a gripper or hand is next commanded
    more than halfway across its range from where the sample has it (a grasp, a release), else
    the episode's last commanded joints. The acting frame of the samples before a keypose is the
    one that moves furthest from where the first of them commands it to where the keypose does.
    `actions` is (N, H, D); None when the embodiment has no goal frame or the episode no samples.
    """
    frames = goal_frames(embodiment)
    if not frames or not len(actions):
        return None
    io = EmbodimentIO(embodiment)
    kinematics = embodiment.kinematics
    commanded = io.split(actions[:, 0])[0]  # (N, joints) each sample's first target
    final = io.split(actions[-1, -1:])[0][0]
    grips = [g for g in embodiment.commanded_groups if g.kind in END_EFFECTOR_KINDS]
    columns = [io.joints.index(j) for g in grips for j in g.joints]
    spans = np.concatenate([g.upper - g.lower for g in grips]) if grips else np.zeros(0)

    def positions(joints: np.ndarray) -> np.ndarray:
        """(frames, 3) each goal frame's position where the commanded `joints` put it."""
        q = np.zeros(len(kinematics.joint_names))
        q[kinematics.index(io.joints)] = joints
        return np.array([kinematics.frame_pose(q, frame)[:3, 3] for frame in frames])

    goals, acting, keyposes = np.zeros((len(actions), 3), np.float32), np.zeros(len(actions), np.int64), {}
    for i in range(len(actions)):
        changed = np.any(np.abs(commanded[i + 1:, columns] - commanded[i, columns]) > 0.5 * spans, axis=1)
        key = i + 1 + int(np.argmax(changed)) if changed.any() else -1
        if key not in keyposes:
            there = positions(final if key < 0 else commanded[key])
            mover = int(np.argmax(np.linalg.norm(there - positions(commanded[i]), axis=1))) if len(frames) > 1 else 0
            keyposes[key] = there[mover], mover
        goals[i], acting[i] = keyposes[key]
    return goals, acting


