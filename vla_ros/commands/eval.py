"""`vla-ros eval`: closed-loop evaluation of a policy through the real ROS graph.

sim_node, controller_node and policy_node run as separate processes over DDS, as on a robot.
Seeded episodes announce their instruction in the held-out phrasings by default (words no
demonstration used), so the success rate measures whether the policy understood the words, not
whether it memorised strings. Reports success per episode and per instruction, the overall rate
with its 95% Wilson interval and the policy node's inference latency; optionally JSON and a
contact sheet of what a camera saw. With `--perturb`, the same seeds run once per perturbation
(vla_ros.sim.perturb) and a table compares them, with why the failed episodes failed.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SHEET_EPISODES = 4  # the first episodes shown on the contact sheet
SHEET_FRAMES = 4  # per episode, evenly spaced through it


def register(verbs) -> None:
    parser = verbs.add_parser("eval", help="evaluate a policy closed-loop in the simulator through ROS")
    parser.add_argument("--checkpoint", help="checkpoint of the builtin policy (default: its own)")
    parser.add_argument("--embodiment", default="arm7", help="embodiment name or file (default arm7)")
    parser.add_argument("--task", default="reach",
                        help="task spec: reach, reach:red, push:blue:left, ... (default reach)")
    parser.add_argument("--episodes", type=int, default=40, help="number of seeded episodes (default 40)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first episode; the next ones count up "
                        "(default 1000, away from the seeds demonstrations are collected with)")
    parser.add_argument("--phrasing", default="held_out",
                        help="instruction phrasings: held_out, train or canonical (default held_out)")
    parser.add_argument("--seconds", type=float, default=10.0, help="sim time limit per episode (default 10)")
    parser.add_argument("--policy", default="builtin",
                        help="policy backend: builtin, hold, replay, remote, lerobot (default builtin)")
    parser.add_argument("--policy-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a backend parameter (repeatable), e.g. --policy-param path=chunks.npz")
    parser.add_argument("--use-sim-time", action="store_true",
                        help="every node follows the sim's /clock (default: the wall clock, as vla-ros up)")
    parser.add_argument("--lockstep", action="store_true",
                        help="the sim steps only once the controller has commanded and waits for the policy at each "
                             "observation: the same run on a loaded machine, slower than real time (implies "
                             "--use-sim-time)")
    parser.add_argument("--perturb", action="append", metavar="NAME",
                        help="run the episodes perturbed: none, distractor, nudge or lure; repeat to compare several "
                             "on the same seeds (default none)")
    parser.add_argument("--camera", help="camera for --sheet (default: the embodiment's first)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--sheet", type=Path, help="write a PNG contact sheet of the first episodes")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class EvalEpisode:
    """One evaluated episode: how it ended, and what the policy node reported during it."""

    seed: int
    task: str  # the full spec, e.g. reach:red
    instruction: str  # as announced on vla/instruction
    target: str  # e.g. red_cube
    success: bool
    seconds: float  # sim time the episode ran
    progress: float
    detail: str
    # policy_node's diagnostics during the episode: medians of its reports, None without any
    inference_p50_ms: float | None
    inference_p95_ms: float | None
    chunks_per_s: float | None
    errors: int  # backend errors the policy node counted during the episode
    perturb: str = "none"

    @property
    def reason(self) -> str | None:
        """Why it failed (vla_ros.sim.tasks.failure_reason); None for a success."""
        from vla_ros.sim.tasks import failure_reason

        return None if self.success else failure_reason(self.detail)


@dataclass(frozen=True)
class Tally:
    """Some episodes' successes, the rate with its Wilson interval and the failures by reason."""

    episodes: tuple[EvalEpisode, ...]

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def rate(self) -> float:
        return self.successes / max(len(self.episodes), 1)

    @property
    def ci95(self) -> tuple[float, float]:
        from vla_ros.stats import wilson_interval

        return wilson_interval(self.successes, len(self.episodes))

    @property
    def progress(self) -> float:
        """Mean progress: the share of the way to the task's goal the episodes made (vla_ros.sim.tasks)."""
        return sum(e.progress for e in self.episodes) / max(len(self.episodes), 1)

    @property
    def failures(self) -> dict[str, int]:
        """How many failed for each reason."""
        counts: dict[str, int] = {}
        for episode in self.episodes:
            if episode.reason is not None:
                counts[episode.reason] = counts.get(episode.reason, 0) + 1
        return counts

    def to_json(self) -> dict:
        return {"successes": self.successes, "episodes": len(self.episodes), "success_rate": self.rate,
                "ci95": list(self.ci95), "progress": round(self.progress, 3), "failures": self.failures}


@dataclass(frozen=True)
class EvalReport:
    """An evaluation: its settings, every episode, the success rate with its interval, the latencies."""

    policy: str
    checkpoint: str | None
    embodiment: str
    task: str
    phrasing: str
    seed: int
    seconds: float
    episodes: list[EvalEpisode]
    inference_p50_ms: float | None  # median of policy_node's reports over the run
    inference_p95_ms: float | None
    log_dir: Path  # the nodes' output
    use_sim_time: bool = False  # the nodes followed the sim's /clock, not the wall clock
    lockstep: bool = False  # the sim waited for the controller and the policy
    sheet: np.ndarray | None = None  # (H, W, 3) uint8 RGB contact sheet of the first episodes, given a camera

    @property
    def tally(self) -> Tally:
        return Tally(tuple(self.episodes))

    @property
    def successes(self) -> int:
        return self.tally.successes

    @property
    def success_rate(self) -> float:
        return self.tally.rate

    @property
    def ci95(self) -> tuple[float, float]:
        return self.tally.ci95

    def perturbed(self) -> dict[str, Tally]:
        """The episodes by perturbation, in the order they ran."""
        groups: dict[str, list[EvalEpisode]] = {}
        for episode in self.episodes:
            groups.setdefault(episode.perturb, []).append(episode)
        return {name: Tally(tuple(episodes)) for name, episodes in groups.items()}

    @property
    def per_instruction(self) -> dict[str, tuple[int, int]]:
        """Successes and episodes per instruction ({instruction: (successes, episodes)}), first seen first."""
        counts: dict[str, tuple[int, int]] = {}
        for episode in self.episodes:
            successes, episodes = counts.get(episode.instruction, (0, 0))
            counts[episode.instruction] = (successes + episode.success, episodes + 1)
        return counts

    def to_json(self) -> dict:
        return {
            "policy": self.policy, "checkpoint": self.checkpoint, "embodiment": self.embodiment, "task": self.task,
            "phrasing": self.phrasing, "seed": self.seed, "seconds": self.seconds,
            "episodes": [{**asdict(e), "reason": e.reason} for e in self.episodes],
            "perturbations": {name: tally.to_json() for name, tally in self.perturbed().items()},
            "per_instruction": {text: {"successes": s, "episodes": n} for text, (s, n) in self.per_instruction.items()},
            "successes": self.successes, "success_rate": self.success_rate, "ci95": list(self.ci95),
            "progress": round(self.tally.progress, 3),
            "inference_p50_ms": self.inference_p50_ms, "inference_p95_ms": self.inference_p95_ms,
            "log_dir": str(self.log_dir), "use_sim_time": self.use_sim_time, "lockstep": self.lockstep,
        }


def evaluate(embodiment: str, task: str, episodes: int, seed: int, phrasing: str, seconds: float, policy: str,
             checkpoint: str | None, policy_params: Mapping[str, object], camera: str | None, console,
             use_sim_time: bool = False, perturbations: tuple[str, ...] = ("none",),
             lockstep: bool = False) -> EvalReport:
    """Run seeded episodes (seeds seed, seed + 1, ...) of `task` with `policy` in charge of the sim robot.

    Args:
        embodiment: name or file.
        task: task spec; parameters left out are drawn from each episode's seed.
        episodes: how many.
        seed: the first episode's; the others count up.
        phrasing: how the sim words each instruction: held_out, train or canonical.
        seconds: sim time limit per episode [s].
        policy: policy_node's backend.
        checkpoint: the builtin backend's checkpoint (None: its default).
        policy_params: the backend's other parameters.
        camera: camera whose frames make `EvalReport.sheet`; None: no sheet.
        console: a rich Console; a line per episode is printed as it finishes.
        use_sim_time: every node follows the sim's /clock instead of the wall clock.
        perturbations: the seeds run once under each (vla_ros.sim.perturb; "none": as drawn).
        lockstep: the sim waits for the controller each period and for the policy at each
            observation (implies `use_sim_time`).

    Raises:
        VlaRosError: bad arguments, a node that died, a graph that did not come up.
    """
    from vla_ros import bringup
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError, did_you_mean
    from vla_ros.policy.registry import MODULES, backend_class
    from vla_ros.rollout import Rollout, contact_sheet, median
    from vla_ros.sim.perturb import PERTURBATIONS
    from vla_ros.sim.tasks import PHRASINGS, TASKS

    robot = load_embodiment(embodiment)
    task_name = task.split(":")[0]
    if task_name not in TASKS:
        raise VlaRosError(f"no task {task_name!r}{did_you_mean(task_name, TASKS)}; tasks: {', '.join(TASKS)}")
    if phrasing not in PHRASINGS:
        raise VlaRosError(f"phrasing {phrasing!r} is not one of {', '.join(PHRASINGS)}")
    if episodes < 1 or not seconds > 0:
        raise VlaRosError(f"need at least one episode of some seconds, got episodes={episodes} seconds={seconds}")
    if policy not in MODULES:  # says what is wrong; known backends load in the node (builtin imports torch)
        backend_class(policy)
    for name in perturbations:
        if name not in PERTURBATIONS:
            raise VlaRosError(f"no perturbation {name!r}{did_you_mean(name, PERTURBATIONS)}; perturbations: "
                              f"{', '.join(PERTURBATIONS)}")
    if task_name == "push" and "nudge" in perturbations:
        raise VlaRosError("a nudge moves the cube a push is judged by: push takes no --perturb nudge")
    if camera is not None and camera not in robot.cameras:
        raise VlaRosError(f"no camera {camera!r}; cameras: {', '.join(robot.cameras) or 'none'}")

    options = bringup.Options(str(robot.path), policy=policy, checkpoint=checkpoint or "",
                              policy_params=dict(policy_params), use_sim_time=use_sim_time or lockstep, task=task,
                              seed=seed, phrasing=phrasing, lockstep=lockstep)
    results, shown, reports = [], [], []
    with Rollout(robot, options, camera) as rollout:
        ready = rollout.wait_ready()
        if ready["level"] == 0:
            console.print(f"policy_node ready: {ready['message']}")
        else:
            console.print(f"[yellow]policy_node is not healthy: {ready['message']}; evaluating anyway[/]")
        errors = int(ready["errors"])
        runs = [(perturb, index) for perturb in perturbations for index in range(episodes)]
        for number, (perturb, index) in enumerate(runs):
            frames = SHEET_FRAMES if camera is not None and number < SHEET_EPISODES else 0
            report = rollout.episode(task, seed + index, seconds, frames, perturb=perturb)
            outcome = report.outcome
            episode = EvalEpisode(
                outcome.seed, outcome.task, outcome.instruction, outcome.target, outcome.success, outcome.seconds,
                outcome.progress, outcome.detail, report.median("inference_p50_ms"),
                report.median("inference_p95_ms"), report.median("chunks_per_s"), report.errors(errors), perturb)
            errors += episode.errors
            results.append(episode)
            reports += report.reports
            if frames:
                shown.append(report)
            shaken = "" if perturb == "none" else f" [{perturb}]"
            console.print(f"episode {number + 1}/{len(runs)} seed {episode.seed}{shaken} {episode.task} "
                          f"{episode.instruction!r}: {'[green]success[/]' if episode.success else '[red]failure[/]'} "
                          f"after {episode.seconds:.2f} s ({episode.detail}); inference p50 "
                          f"{_ms(episode.inference_p50_ms)}, {episode.errors} errors")
    return EvalReport(policy, checkpoint, robot.name, task, phrasing, seed, seconds, results,
                      median([float(r["inference_p50_ms"]) for r in reports]),
                      median([float(r["inference_p95_ms"]) for r in reports]),
                      rollout.log_dir, use_sim_time or lockstep, lockstep, contact_sheet(shown, SHEET_FRAMES))


def outcome_table(report: EvalReport):
    """A rich Table: per perturbation, the success rate with its interval and the failures by reason."""
    from rich.table import Table

    from vla_ros.sim.tasks import FAILURE_REASONS

    groups = report.perturbed()
    reasons = [r for r in (*FAILURE_REASONS, "timeout") if any(g.failures.get(r) for g in groups.values())]
    table = Table(title=f"{report.embodiment} {report.task}: outcomes and failure reasons")
    for column in ("perturbation", "successes", "episodes", "rate", "95% interval", *reasons):
        table.add_column(column, justify="left" if column == "perturbation" else "right")
    for name, tally in groups.items():
        low, high = tally.ci95
        table.add_row(name, str(tally.successes), str(len(tally.episodes)), f"{tally.rate:.0%}",
                      f"{low:.0%}-{high:.0%}", *(str(tally.failures.get(r, 0)) for r in reasons))
    return table


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from vla_ros.embodiment import load_embodiment
    from vla_ros.media import write_image
    from vla_ros.policy import parse_params
    from vla_ros.terminal import console as make_console

    params = parse_params(pairs=args.policy_param)
    camera = (args.camera or next(iter(load_embodiment(args.embodiment).cameras), None)) if args.sheet else None
    console = make_console()
    report = evaluate(args.embodiment, args.task, args.episodes, args.seed, args.phrasing, args.seconds, args.policy,
                      args.checkpoint, params, camera, console, args.use_sim_time,
                      tuple(args.perturb or ("none",)), args.lockstep)
    table = Table(title=f"{report.embodiment} {report.task}, {report.phrasing} phrasings, policy {report.policy}")
    for column in ("instruction", "successes", "episodes", "rate"):
        table.add_column(column, justify="left" if column == "instruction" else "right")
    for instruction, (successes, episodes) in report.per_instruction.items():
        table.add_row(instruction, str(successes), str(episodes), f"{successes / episodes:.0%}")
    console.print(table)
    console.print(outcome_table(report))
    low, high = report.ci95
    console.print(f"success {report.successes}/{len(report.episodes)} = {report.success_rate:.0%} "
                  f"(95% Wilson interval {low:.0%}-{high:.0%}), mean progress {report.tally.progress:.2f}; "
                  f"inference p50 {_ms(report.inference_p50_ms)}, "
                  f"p95 {_ms(report.inference_p95_ms)} (node logs in {report.log_dir})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2))
        console.print(f"wrote {args.json}")
    if args.sheet:
        if report.sheet is None:
            console.print(f"[yellow]no frames of camera {camera} arrived: no contact sheet[/]")
        else:
            write_image(args.sheet, report.sheet)
            console.print(f"wrote {args.sheet} (camera {camera}, the first {min(len(report.episodes), SHEET_EPISODES)} "
                          "episodes)")
    return 0
