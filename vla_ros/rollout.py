"""Policy episodes in the simulator through the real ROS graph: what `eval` and `demo` share.

`Rollout` starts the graph of `vla-ros up EMBODIMENT --sim` (sim_node, controller_node,
policy_node; vla_ros.bringup) as child processes, waits until the policy node reports and the sim
is ready, then runs seeded episodes through the sim's ~/reset (resetting the controller with it),
collecting the policy node's reports of each episode and, on request, camera frames. A node that
dies ends the rollout with ChildDied naming it. `contact_sheet` lays out the kept frames, one row
per episode: its first tile names the instruction, its last says how the episode ended.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vla_ros import bringup, media
from vla_ros.embodiment import Embodiment
from vla_ros.process import ProcessGroup
from vla_ros.ros.sim_client import EpisodeOutcome, SimClient, SimUnavailable
from vla_ros.ros.task_status import SimStatus

READY_TIMEOUT_S = 180.0  # policy_node loads its backend (torch, a checkpoint, a language model) before it reports
HEALTHY_TIMEOUT_S = 60.0  # then the cameras start rendering: the first chunks follow
SIM_READY_TIMEOUT_S = 60.0
FRAME_EVERY_S = 0.2  # [s] sim time between frames kept of an episode
LABEL_CHARS = 30  # of a sheet label: what a 224 px tile holds


@dataclasses.dataclass
class EpisodeReport:
    """One episode: how it ended, what the policy node reported during it, the frames kept."""

    outcome: EpisodeOutcome
    reports: list[dict]  # policy_node's statuses during the episode (vla_ros.ros.diagnostics.status_values)
    frames: list[tuple[float, np.ndarray]] = dataclasses.field(default_factory=list)  # (episode time [s], RGB)

    def median(self, key: str) -> float | None:
        """The median of the finite values of `key` in the reports (latencies are NaN before a chunk)."""
        return median([float(r[key]) for r in self.reports if key in r])

    def errors(self, before: int) -> int:
        """Backend errors the policy node counted during the episode, given its count before it."""
        return int(self.reports[-1]["errors"]) - before if self.reports else 0


class Rollout:
    """The sim graph for `robot` with a policy in charge; use as a context manager.

    Args:
        robot: the embodiment.
        options: the graph (vla_ros.bringup.Options; `sim` is set here).
        camera: a camera whose frames episodes may keep (None: none).
        log_dir: where each node's output goes (default: a new temporary directory).
    """

    def __init__(self, robot: Embodiment, options: bringup.Options, camera: str | None = None,
                 log_dir: Path | None = None):
        self.robot = robot
        self.options = dataclasses.replace(options, sim=True)
        self.camera = camera
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="vla_ros-rollout-"))
        self.graph = ProcessGroup(self.log_dir)
        self.client: SimClient | None = None
        self.reports: list[dict] = []

    def __enter__(self) -> Rollout:
        try:
            for node in bringup.graph(self.options):
                self.graph.start(node.name, node.argv())
            topic = self.robot.cameras[self.camera].topic if self.camera else None
            self.client = SimClient(self.options.namespace, topic, controller=True,
                                    pause_to_reset=self.options.lockstep)
            self.reports = self.client.watch_diagnostics("policy_node")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.client is not None:
            self.client.close()
        self.graph.stop_all()

    @property
    def nodes(self) -> list[str]:
        return list(self.graph.children)

    def wait_ready(self) -> dict:
        """Until policy_node reports healthy (chunks flowing) and the sim is ready; the last report.

        A policy that reports but never gets healthy is evaluated as it is (its episodes fail): then
        the report says why.
        """
        self.client.spin_until(self._policy_reported, READY_TIMEOUT_S,
                               "policy_node's first report (it loads its backend first)")
        self.client.wait_ready(SIM_READY_TIMEOUT_S, self.robot.commanded_groups[0].command_topic)
        try:
            self.client.spin_until(lambda: self._policy_reported() and self.reports[-1]["level"] == 0,
                                   HEALTHY_TIMEOUT_S, "policy_node publishing chunks")
        except SimUnavailable:
            pass
        report = self.reports[-1]
        self.reports.clear()
        return report

    def _policy_reported(self) -> bool:
        self.graph.check()
        return bool(self.reports)

    def episode(self, task: str, seed: int, seconds: float, frames: int = 0, instruction: str | None = None,
                on_status: Callable[[SimStatus], None] | None = None, perturb: str = "none") -> EpisodeReport:
        """Run one episode of `task` from `seed` for up to `seconds` of sim time.

        `frames` frames of the camera are kept, spread over it; `instruction` replaces the sim's
        wording; `perturb` names the episode's perturbation (vla_ros.sim.perturb).
        """
        def watch(status: SimStatus) -> None:
            self.graph.check()  # an episode without its policy node says nothing about the policy
            if on_status is not None:
                on_status(status)

        outcome = self.client.run_episode(task, seed, seconds, FRAME_EVERY_S if frames else 0.0, instruction, watch,
                                          perturb)
        self.graph.check()
        reports = list(self.reports)
        self.reports.clear()
        return EpisodeReport(outcome, reports, self.client.take_frames(frames) if frames else [])


def median(values: list[float]) -> float | None:
    """The median of the finite values, None without any."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else None


def sheet_label(episode: int, instruction: str, time_s: float, success: bool, index: int, count: int) -> str:
    """A contact-sheet tile's label.

    A row is an episode: its first tile names the instruction, its last says how it ended, the
    others their episode time.
    """
    if index == 0:
        text = f"{episode}. {instruction}"
        return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "~"
    return f"t={time_s:.1f}s" + (f" {'reached' if success else 'missed'}" if index == count - 1 else "")


def contact_sheet(episodes: list[EpisodeReport], columns: int) -> np.ndarray | None:
    """One row of `columns` labelled tiles per episode that kept frames (None when none did)."""
    tiles, labels = [], []
    for number, episode in enumerate(episodes, start=1):
        kept = episode.frames[:columns]
        for index, (time_s, frame) in enumerate(kept):
            tiles.append(frame)
            labels.append(sheet_label(number, episode.outcome.instruction, time_s, episode.outcome.success,
                                      index, len(kept)))
        for _ in range(columns - len(kept) if kept else 0):  # keep rows aligned when an episode kept fewer
            tiles.append(np.zeros_like(kept[0][1]))
            labels.append("")
    return media.contact_sheet(tiles, columns=columns, labels=labels) if tiles else None
