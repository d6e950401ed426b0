"""A synthetic policy for exercising the controller: chunks of a known motion, with a real
policy's timing. Not a VLA: a test and benchmark tool (`vla-ros bench controller` runs it).

Every `interval_s` it takes the newest joint_states stamp as its observation time, "infers" for
a delay drawn from N(delay_s, jitter_s) (sleeping, like a policy waiting on its model), then
publishes on vla/action_chunk a chunk of `horizon` points `chunk_dt_s` apart following
    q_ref(t) = home + amplitude * sin(2 pi frequency t + phase_j)   (arm, torso and head joints)
from the observation time on, plus a per-chunk bias of `model_error_rad` (one draw per joint):
consecutive chunks disagree a little, as a real model's do. Grippers and other joints stay at
home. With a mobile base it also sends vla/base_chunk with vx = base_amplitude * sin(...).
Run it as `python -m vla_ros.nodes.chunk_source_node --ros-args -p embodiment:=arm7`.
"""
from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.common import declare, run
from vla_ros.ros.time import to_seconds
from vla_ros.ros.trajectory import to_base_chunk_msg, to_chunk_msg

MOVING_KINDS = ("arm", "torso", "head")


def reference(embodiment, t: np.ndarray, amplitude: float, frequency: float) -> np.ndarray:
    """q_ref at times t (K,) for the commanded joints, (K, n), clamped inside the soft margins."""
    columns = []
    for group in embodiment.commanded_groups:
        home = np.asarray(group.home, dtype=float)
        if group.kind in MOVING_KINDS:
            phase = np.arange(len(home)) * 0.7
            q = home + amplitude * np.sin(2 * np.pi * frequency * t[:, None] + phase)
        else:
            q = np.broadcast_to(home, (len(t), len(home)))
        margin = group.soft_margin
        columns.append(np.clip(q, group.lower + margin, group.upper - margin))
    return np.hstack(columns)


class ChunkSourceNode(Node):
    def __init__(self):
        super().__init__("chunk_source")
        self.embodiment = load_embodiment(declare(self, "embodiment", "arm7", "embodiment name or file", read_only=True))
        self.interval = declare(self, "interval_s", 0.2, "time between chunk requests [s]", read_only=True, low=0.01, high=10.0)
        self.delay = declare(self, "delay_s", 0.08, "mean inference delay [s]", read_only=True, low=0.0, high=10.0)
        self.jitter = declare(self, "jitter_s", 0.02, "inference delay standard deviation [s]", read_only=True, low=0.0, high=10.0)
        self.horizon = declare(self, "horizon", 25, "points per chunk", read_only=True, low=1, high=1000)
        self.chunk_dt = declare(self, "chunk_dt_s", 0.02, "time between chunk points [s]", read_only=True, low=0.001, high=1.0)
        self.amplitude = declare(self, "amplitude_rad", 0.15, "reference motion amplitude [rad]", read_only=True, low=0.0, high=1.0)
        self.frequency = declare(self, "frequency_hz", 0.25, "reference motion frequency [Hz]", read_only=True, low=0.0, high=5.0)
        self.model_error = declare(self, "model_error_rad", 0.01, "per-chunk bias standard deviation [rad]",
                                   read_only=True, low=0.0, high=1.0)
        self.base_amplitude = declare(self, "base_amplitude", 0.1, "base vx amplitude [m/s]", read_only=True, low=0.0, high=2.0)
        seed = declare(self, "seed", 0, "random seed", read_only=True, low=0, high=2**31 - 1)
        self.rng = np.random.default_rng(seed)
        self.joints = [j for g in self.embodiment.commanded_groups for j in g.joints]
        self.observed: float | None = None
        self.chunks = self.create_publisher(JointTrajectory, "vla/action_chunk", 10)
        self.base_chunks = self.create_publisher(MultiDOFJointTrajectory, "vla/base_chunk", 10) \
            if self.embodiment.base else None
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 1)
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _on_joint_states(self, msg: JointState) -> None:
        self.observed = to_seconds(msg.header.stamp)

    def _loop(self) -> None:
        times = self.chunk_dt * np.arange(1, self.horizon + 1)
        next_request = time.monotonic()
        while self.running:
            next_request += self.interval
            stamp = self.observed
            if stamp is not None:
                time.sleep(max(0.0, self.rng.normal(self.delay, self.jitter)))
                positions = reference(self.embodiment, stamp + times, self.amplitude, self.frequency)
                positions = positions + self.rng.normal(0.0, self.model_error, positions.shape[1])
                self.chunks.publish(to_chunk_msg(self.joints, times, positions, stamp))
                if self.base_chunks is not None:
                    vx = self.base_amplitude * np.sin(2 * np.pi * self.frequency * (stamp + times))
                    velocities = np.column_stack([vx, np.zeros_like(vx), np.zeros_like(vx)])
                    self.base_chunks.publish(to_base_chunk_msg(self.embodiment.base.name, times, velocities, stamp))
            time.sleep(max(0.0, next_request - time.monotonic()))

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2.0)


def main(args=None):
    run(ChunkSourceNode, args)


if __name__ == "__main__":
    main()
