"""Action chunks as ROS messages: trajectory_msgs/JointTrajectory and MultiDOFJointTrajectory.

An action chunk is a JointTrajectory: `header.stamp` is the observation time, each point's
`time_from_start` is relative to it (ARCHITECTURE.md section 3). A base chunk is a
MultiDOFJointTrajectory with one joint (the base) whose points carry velocities as Twists.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Transform, Twist
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint, MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

from vla_ros.ros.time import to_seconds, to_stamp


@dataclass
class ChunkArrays:
    """A chunk message's content as arrays, unvalidated (the controller validates).

    positions and velocities are lists of per-point rows: rows may be ragged in a bad message.
    """

    joints: list[str]
    times: np.ndarray
    positions: list[np.ndarray]
    velocities: list[np.ndarray]
    stamp: float


def duration_seconds(duration: Duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def to_duration(seconds: float) -> Duration:
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def from_chunk_msg(msg: JointTrajectory) -> ChunkArrays:
    points = msg.points
    velocities = [np.asarray(p.velocities, dtype=float) for p in points]
    return ChunkArrays(
        joints=list(msg.joint_names),
        times=np.array([duration_seconds(p.time_from_start) for p in points]),
        positions=[np.asarray(p.positions, dtype=float) for p in points],
        velocities=velocities if any(len(v) for v in velocities) else [],
        stamp=to_seconds(msg.header.stamp),
    )


def to_chunk_msg(joints, times, positions, stamp: float, velocities=None) -> JointTrajectory:
    """A JointTrajectory of `positions` (K, n) at `times` (K,) [s] after `stamp` [s]."""
    msg = JointTrajectory(header=Header(stamp=to_stamp(stamp)), joint_names=list(joints))
    for k, t in enumerate(times):
        point = JointTrajectoryPoint(positions=np.asarray(positions[k], dtype=float).tolist(),
                                     time_from_start=to_duration(float(t)))
        if velocities is not None:
            point.velocities = np.asarray(velocities[k], dtype=float).tolist()
        msg.points.append(point)
    return msg


def from_base_chunk_msg(msg: MultiDOFJointTrajectory) -> tuple[np.ndarray, np.ndarray, float]:
    """(times (K,), velocities (K, 3) as vx, vy, wz, stamp) of a base chunk; a point without a
    velocity gives NaNs, which the controller rejects."""
    times = np.array([duration_seconds(p.time_from_start) for p in msg.points])
    velocities = np.full((len(msg.points), 3), np.nan)
    for k, point in enumerate(msg.points):
        if point.velocities:
            twist = point.velocities[0]
            velocities[k] = (twist.linear.x, twist.linear.y, twist.angular.z)
    return times, velocities, to_seconds(msg.header.stamp)


def to_base_chunk_msg(base_name: str, times, velocities, stamp: float) -> MultiDOFJointTrajectory:
    """A MultiDOFJointTrajectory for the base: `velocities` (K, 3) vx [m/s], vy [m/s], wz [rad/s]."""
    msg = MultiDOFJointTrajectory(header=Header(stamp=to_stamp(stamp)), joint_names=[base_name])
    for t, (vx, vy, wz) in zip(times, np.asarray(velocities, dtype=float)):
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.angular.z = float(vx), float(vy), float(wz)
        msg.points.append(MultiDOFJointTrajectoryPoint(transforms=[Transform()], velocities=[twist],
                                                       time_from_start=to_duration(float(t))))
    return msg
