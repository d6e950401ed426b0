"""Action chunks as ROS messages: trajectory_msgs/JointTrajectory and MultiDOFJointTrajectory.

An action chunk is a JointTrajectory: `header.stamp` is the observation time, each point's
`time_from_start` is relative to it (docs/architecture.md, "Action chunks"). A base chunk is a
MultiDOFJointTrajectory with one joint (the base) whose points carry velocities as Twists.
Messages become the controller's validated chunk values (vla_ros.control.chunk) here: a message
that cannot be one raises ChunkRejected with the reason.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Transform, Twist
from std_msgs.msg import Header
from trajectory_msgs.msg import (
    JointTrajectory,
    JointTrajectoryPoint,
    MultiDOFJointTrajectory,
    MultiDOFJointTrajectoryPoint,
)

from vla_ros.control.chunk import BaseChunk, ChunkRejected, JointChunk
from vla_ros.ros.time import to_seconds, to_stamp

MAX_POINTS = 10_000  # in one chunk (10 s at 1 kHz): a larger one is refused before it is converted
MAX_JOINTS = 256  # named in one chunk


def duration_seconds(duration: Duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def to_duration(seconds: float) -> Duration:
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def _bounded(msg: JointTrajectory | MultiDOFJointTrajectory, what: str) -> None:
    if len(msg.points) > MAX_POINTS:
        raise ChunkRejected(f"{what}has {len(msg.points)} points (at most {MAX_POINTS})")
    if len(msg.joint_names) > MAX_JOINTS:
        raise ChunkRejected(f"{what}names {len(msg.joint_names)} joints (at most {MAX_JOINTS})")


def from_chunk_msg(msg: JointTrajectory) -> JointChunk:
    """The chunk a JointTrajectory carries (ChunkRejected when it cannot be one)."""
    _bounded(msg, "")
    points = msg.points
    velocities = [p.velocities for p in points]
    return JointChunk.from_points(to_seconds(msg.header.stamp), msg.joint_names,
                                  [duration_seconds(p.time_from_start) for p in points],
                                  [p.positions for p in points], velocities if any(len(v) for v in velocities) else ())


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


def from_base_chunk_msg(msg: MultiDOFJointTrajectory) -> BaseChunk:
    """The base chunk a MultiDOFJointTrajectory carries: `velocities[0]` of each point as (vx, vy, wz).

    ChunkRejected when a point has none, or the chunk is otherwise invalid.
    """
    _bounded(msg, "base chunk ")
    velocities = []
    for k, point in enumerate(msg.points):
        if not point.velocities:
            raise ChunkRejected(f"base chunk point {k} has no velocity")
        twist = point.velocities[0]
        velocities.append((twist.linear.x, twist.linear.y, twist.angular.z))
    times = [duration_seconds(p.time_from_start) for p in msg.points]
    return BaseChunk(to_seconds(msg.header.stamp), np.array(times), np.array(velocities).reshape(len(times), 3))


def to_base_chunk_msg(base_name: str, times, velocities, stamp: float) -> MultiDOFJointTrajectory:
    """A MultiDOFJointTrajectory for the base: `velocities` (K, 3) vx [m/s], vy [m/s], wz [rad/s]."""
    msg = MultiDOFJointTrajectory(header=Header(stamp=to_stamp(stamp)), joint_names=[base_name])
    for t, (vx, vy, wz) in zip(times, np.asarray(velocities, dtype=float)):
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.angular.z = float(vx), float(vy), float(wz)
        msg.points.append(MultiDOFJointTrajectoryPoint(transforms=[Transform()], velocities=[twist],
                                                       time_from_start=to_duration(float(t))))
    return msg
