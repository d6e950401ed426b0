"""Goals of the built-in VLA: where the end effector goes next, from the demonstrations (hindsight).

A sample's goal is where the end effector was commanded to at the episode's next keypose (where
the gripper next closes or opens, else the end), in the robot's root frame, or seen from the end
effector where the sample's state puts it. Plain kinematics: no ROS, no datasets.
"""
from __future__ import annotations

import numpy as np

from vla_ros.embodiment.embodiment import Embodiment
from vla_ros.embodiment.vectors import EmbodimentIO


def goal_frame(embodiment: Embodiment) -> str | None:
    """The frame goals are positions of: the end effector of the first arm that names one (or None)."""
    return next((g.ee_frame for g in embodiment.commanded_groups if g.kind == "arm" and g.ee_frame), None)


def goal_frame_pose(state: np.ndarray, embodiment: Embodiment, io: EmbodimentIO) -> np.ndarray:
    """(4, 4) pose of the goal frame in the root frame where `state` (D, the layout of `io`) puts it."""
    return embodiment.kinematics.frame_pose(io.joint_vector(state), goal_frame(embodiment))


def goals_in_tool(goals: np.ndarray, states: np.ndarray, embodiment: Embodiment) -> np.ndarray:
    """(N, 3) [m] root-frame goals seen from the goal frame where states (N, D) put it."""
    io = EmbodimentIO(embodiment)
    seen = np.zeros_like(goals, dtype=np.float32)
    for i, (goal, state) in enumerate(zip(goals, states)):
        pose = goal_frame_pose(state, embodiment, io)
        seen[i] = pose[:3, :3].T @ (goal - pose[:3, 3])
    return seen


def goal_in_root(goal: np.ndarray, state: np.ndarray, embodiment: Embodiment, io: EmbodimentIO) -> np.ndarray:
    """(3,) [m] a goal seen from the goal frame where `state` (D,) puts it, in the root frame."""
    pose = goal_frame_pose(state, embodiment, io)
    return pose[:3, :3] @ goal + pose[:3, 3]


def hindsight_goals(actions: np.ndarray, embodiment: Embodiment) -> np.ndarray | None:
    """(N, 3) [m] each sample's goal: the goal frame's position at its next keypose, in the root frame.

    The next keypose is where the commanded joints are when a gripper or hand is next commanded
    more than halfway across its range from where the sample has it (a grasp, a release), else
    the episode's last commanded joints. `actions` is (N, H, D); None when the embodiment has no
    goal frame or the episode no samples.
    """
    frame = goal_frame(embodiment)
    if frame is None or not len(actions):
        return None
    io = EmbodimentIO(embodiment)
    kinematics = embodiment.kinematics
    commanded = io.split(actions[:, 0])[0]  # (N, joints) each sample's first target
    final = io.split(actions[-1, -1:])[0][0]
    grips = [g for g in embodiment.commanded_groups if g.kind in ("gripper", "hand")]
    columns = [io.joints.index(j) for g in grips for j in g.joints]
    spans = np.concatenate([g.upper - g.lower for g in grips]) if grips else np.zeros(0)
    goals, poses = np.zeros((len(actions), 3), np.float32), {}
    for i in range(len(actions)):
        changed = np.any(np.abs(commanded[i + 1:, columns] - commanded[i, columns]) > 0.5 * spans, axis=1)
        key = i + 1 + int(np.argmax(changed)) if changed.any() else -1
        if key not in poses:
            positions = np.zeros(len(kinematics.joint_names))
            positions[kinematics.index(io.joints)] = final if key < 0 else commanded[key]
            poses[key] = kinematics.frame_pose(positions, frame)[:3, 3]
        goals[i] = poses[key]
    return goals


