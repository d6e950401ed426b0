"""The sim's task status on `sim/task_status`: one dataclass, one writer, one parser.

sim_node publishes a diagnostic_msgs/DiagnosticStatus (a standard type, so `ros2 topic echo` and
rqt read it) whose key-value pairs carry the episode; every reader (the scripted expert's node,
the sim client behind `vla-ros eval`, `demo` and `sim`, the tests) goes through `from_status_msg`.
"""
from __future__ import annotations

from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from vla_ros.errors import VlaRosError

FIELDS = ("task", "instruction", "target", "success", "progress", "seed", "episode", "episode_time", "stamp",
          "brakes_on")


class StatusError(VlaRosError):
    """A task status message that lacks a field or holds one that does not parse."""


@dataclass(frozen=True)
class SimStatus:
    """One report of the episode under way.

    Attributes:
        task: the full task spec, e.g. reach:red.
        instruction: the instruction as announced on vla/instruction.
        target: the object the task is about, e.g. red_cube.
        success: the task's success check holds.
        progress: [0, 1] the task's own measure of how far it got.
        detail: what the task sees, in words ("tool 0.120 m from the red cube"), or "success".
        seed: the scene seed.
        episode: counts resets: the same task and seed twice is two episodes.
        episode_time: [s] sim time since the episode started.
        stamp: [s] the sim clock (the stamps of joint_states and images).
        brakes_on: groups the sim's hardware brakes hold.
    """

    task: str
    instruction: str
    target: str
    success: bool
    progress: float
    detail: str
    seed: int
    episode: int
    episode_time: float
    stamp: float
    brakes_on: tuple[str, ...] = ()

    @property
    def episode_start(self) -> float:
        """[s] the sim clock when the episode started: older stamps belong to an earlier one."""
        return self.stamp - self.episode_time


def to_status_msg(status: SimStatus, name: str) -> DiagnosticStatus:
    """The DiagnosticStatus `name` (level OK; the message is the task's detail, or "success")."""
    values = {
        "task": status.task, "instruction": status.instruction, "target": status.target,
        "success": str(status.success).lower(), "progress": f"{status.progress:.3f}", "seed": str(status.seed),
        "episode": str(status.episode), "episode_time": f"{status.episode_time:.3f}", "stamp": f"{status.stamp:.6f}",
        "brakes_on": ",".join(status.brakes_on),
    }
    return DiagnosticStatus(level=DiagnosticStatus.OK, name=name,
                            message="success" if status.success else status.detail,
                            values=[KeyValue(key=key, value=value) for key, value in values.items()])


def from_status_msg(msg: DiagnosticStatus) -> SimStatus:
    """The SimStatus a task status message carries, or StatusError naming what is missing or malformed."""
    values = {kv.key: kv.value for kv in msg.values}
    missing = [key for key in FIELDS if key not in values]
    if missing:
        raise StatusError(f"task status {msg.name!r} lacks {', '.join(missing)}")
    if values["success"] not in ("true", "false"):
        raise StatusError(f"task status success={values['success']!r} is not true or false")
    try:
        return SimStatus(values["task"], values["instruction"], values["target"], values["success"] == "true",
                         float(values["progress"]), msg.message,
                         int(values["seed"]), int(values["episode"]), float(values["episode_time"]),
                         float(values["stamp"]), tuple(b for b in values["brakes_on"].split(",") if b))
    except ValueError as error:
        raise StatusError(f"task status {msg.name!r}: {error}") from None
