"""A synthetic policy for exercising the controller: chunks of a known motion, with a policy's timing.

Not a VLA: a test and benchmark tool (`vla-ros bench controller` runs it).

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

import time
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, RobotParams, VlaNode, run
from vla_ros.params import param
from vla_ros.ros.qos import RELIABLE
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


@dataclass(frozen=True)
class ChunkSourceParams(RobotParams):
    """chunk_source_node's parameters: the synthetic policy's timing and motion."""

    interval_s: float = param(0.2, "time between chunk requests [s]", low=0.01, high=10.0)
    delay_s: float = param(0.08, "mean inference delay [s]", low=0.0, high=10.0)
    jitter_s: float = param(0.02, "inference delay standard deviation [s]", low=0.0, high=10.0)
    horizon: int = param(25, "points per chunk", low=1, high=1000)
    chunk_dt_s: float = param(0.02, "time between chunk points [s]", low=0.001, high=1.0)
    amplitude_rad: float = param(0.15, "reference motion amplitude [rad]", low=0.0, high=1.0)
    frequency_hz: float = param(0.25, "reference motion frequency [Hz]", low=0.0, high=5.0)
    model_error_rad: float = param(0.01, "per-chunk bias standard deviation [rad]", low=0.0, high=1.0)
    base_amplitude: float = param(0.1, "base vx amplitude [m/s]", low=0.0, high=2.0)
    seed: int = param(0, "random seed", low=0, high=2**31 - 1)


class ChunkSourceNode(VlaNode):
    """Publishes chunks of the reference motion with a policy's timing (see the module docstring)."""

    params_type = ChunkSourceParams

    def __init__(self):
        super().__init__("chunk_source")
        self.embodiment = load_embodiment(self.params.embodiment)
        self.hardware_id = self.embodiment.name
        self.rng = np.random.default_rng(self.params.seed)
        self.joints = [j for g in self.embodiment.commanded_groups for j in g.joints]
        self.observed: float | None = None
        self.published = 0
        self.chunks = self.create_publisher(JointTrajectory, "vla/action_chunk", RELIABLE)
        self.base_chunks = self.create_publisher(MultiDOFJointTrajectory, "vla/base_chunk", RELIABLE) \
            if self.embodiment.base else None
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 1)
        self.start_loop(self._loop, "chunk_source")

    def _on_joint_states(self, msg: JointState) -> None:
        self.observed = to_seconds(msg.header.stamp)

    def _loop(self) -> None:
        params = self.params
        times = params.chunk_dt_s * np.arange(1, params.horizon + 1)
        next_request = time.monotonic()
        while not self.stopping.is_set():
            next_request += params.interval_s
            stamp = self.observed
            if stamp is not None:
                self.stopping.wait(max(0.0, self.rng.normal(params.delay_s, params.jitter_s)))
                positions = reference(self.embodiment, stamp + times, params.amplitude_rad, params.frequency_hz)
                positions = positions + self.rng.normal(0.0, params.model_error_rad, positions.shape[1])
                self.chunks.publish(to_chunk_msg(self.joints, times, positions, stamp))
                if self.base_chunks is not None:
                    vx = params.base_amplitude * np.sin(2 * np.pi * params.frequency_hz * (stamp + times))
                    velocities = np.column_stack([vx, np.zeros_like(vx), np.zeros_like(vx)])
                    self.base_chunks.publish(to_base_chunk_msg(self.embodiment.base.name, times, velocities, stamp))
                self.published += 1
            self.stopping.wait(max(0.0, next_request - time.monotonic()))

    def report(self) -> Report:
        if self.observed is None:
            return Report(WARN, "waiting for joint_states", {"chunks_published": self.published})
        return Report(OK, f"{self.published} chunks published", {"chunks_published": self.published})


def main(args=None):
    run(ChunkSourceNode, args)


if __name__ == "__main__":
    main()
