"""One model, many bodies: a generalist against per-body specialists, and transfer to a new body.

The study, reproduced end to end (each stage skipped when its output is already there, so an
interrupted run continues):
1. collect: scripted demonstrations per body and task (`vla-ros collect`), for the shipped bodies
   and the new one (a 6-DoF UR5e drafted by `vla-ros embodiment init` from the vendor's URDF; it
   has no gripper, so its tasks are reach and push);
2. train, all from scratch with one recipe (`vla-ros train`, same seed):
   - `generalist`: every shipped body's data, `--steps` steps;
   - `specialist-B`: body B's data alone, for as many steps as the generalist spent on B (batches
     come from one body at a time in proportion to its samples), so it sees as many of B's samples;
   - `generalist+new`: the shipped bodies' data and a `--share` (3%) of the whole from the new body;
   - `generalist+new-ee`: the same, its arms' actions tool poses (`train --action-space ee_pose`),
     which mean the same on a 7-DoF and a 6-DoF arm (the ablation of the action space);
   - `specialist-new-share`: that share alone; `specialist-new-full`: all the new body's data (the
     ceiling), each for as many steps as a shipped body's specialist;
3. eval through the ROS graph (`vla-ros eval`: sim_node, controller_node and policy_node over DDS),
   held-out phrasings, seeded episodes, per model x body x task.
Writes JSON (every cell: successes, rate, Wilson interval, mean progress, inference p50) and a PNG bar chart.
Run with `vla-ros bench generalist [--task T]... [--steps N] [--episodes N] [--eval-episodes N]
[--share F] [--only MODEL]... [--work DIR] [--json OUT] [--png OUT]`.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vla_ros.data.bag import BagError, find_bags
from vla_ros.terminal import console as make_console

BODIES = ("arm7", "mobile_manipulator", "humanoid_upper")
NEW = "ur5e"
NEW_TASKS = ("reach", "push")  # it has no gripper: the transfer is on the tasks it has
COLLECT_SEED = 40000
NEAR_MISS = 0.3  # share of the demonstrations that start beside the cube (collect --near-miss)
SECONDS = {"reach": 10.0, "push": 10.0}  # eval time limit per task; manipulation gets MANIPULATION_S
MANIPULATION_S = 15.0
VLA_ROS = str(Path(sys.executable).parent / "vla-ros")
ENV = {"ROS_DOMAIN_ID": str(random.randint(1, 200)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", **os.environ}


@dataclass(frozen=True)
class Model:
    """One arm of the study: the datasets it trains on, its steps, the bodies it is evaluated on."""

    name: str
    data: tuple[Path, ...]
    steps: int
    bodies: tuple[str, ...]
    tasks: tuple[str, ...]  # it is evaluated on
    action_space: str = "joint_position"


def run(command: list[str], log: Path) -> None:
    """A `vla-ros` verb, its output to `log`; a failure stops the study naming the log.

    Its graph is on this study's own DDS domain (`ROS_DOMAIN_ID`, drawn once when not set): two
    evaluations on one domain would hear each other's instructions and joint states.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        if subprocess.run([VLA_ROS, *command], stdout=out, stderr=subprocess.STDOUT, env=ENV).returncode != 0:
            raise SystemExit(f"`vla-ros {' '.join(command)}` failed: see {log}")


def bags(folder: Path) -> list[Path]:
    """The bags of a dataset `folder`, none when it is missing or empty."""
    try:
        return find_bags([folder])
    except BagError:
        return []


def collect(work: Path, body: str, task: str, episodes: int) -> Path:
    folder = work / "data" / f"{body}-{task}"
    if len(bags(folder)) < episodes:
        run(["collect", "--embodiment", body, "--task", task, "--episodes", str(episodes), "--seed",
             str(COLLECT_SEED), "--seconds", str(SECONDS.get(task, MANIPULATION_S) + 5), "--near-miss",
             str(NEAR_MISS if task != "push" else 0.0), "--out", str(folder)],
            work / "logs" / f"collect-{folder.name}.txt")
    return folder


def share_of(folder: Path, count: int) -> Path:
    """A dataset of the `count` lowest-seeded episodes of `folder` (links to its bags)."""
    subset = folder.with_name(f"{folder.name}-first{count}")
    subset.mkdir(exist_ok=True)
    for bag in sorted(bags(folder), key=lambda bag: int(bag.name.rsplit("-s", 1)[1]))[:count]:
        if not (subset / bag.name).exists():
            (subset / bag.name).symlink_to(bag.resolve())
    return subset


def samples(folders: list[Path], image_size: int) -> int:
    """Training frames in `folders` (successful episodes), read as `vla-ros train` reads them (and cached)."""
    from vla_ros.data.dataset import cached_samples, find_recordings
    from vla_ros.embodiment import load_embodiment

    total, bodies = 0, {}
    for recording in find_recordings(folders):
        if recording.info.get("outcome.success") != "true":
            continue
        name = recording.info["embodiment"]
        body = bodies.setdefault(name, recording.embodiment or load_embodiment(name))
        total += len(cached_samples(recording, body, 16, 0.05, (image_size, image_size)))
    return total


def train(work: Path, model: Model) -> Path:
    out = work / "models" / model.name
    config = out / "config.json"
    if not (config.exists() and json.loads(config.read_text())["training"].get("step") == model.steps):
        run(["train", "--data", *map(str, model.data), "--out", str(out), "--steps", str(model.steps),
             "--validate-every", str(max(model.steps // 2, 1)), "--action-space", model.action_space],
            work / "logs" / f"train-{model.name}.txt")
    return out


def evaluate(work: Path, model: Model, body: str, task: str, episodes: int) -> dict:
    """One cell of the table, through the ROS graph.

    One evaluation at a time per --work: split runs must not slow each other's policy (its
    latency is part of what is measured).
    """
    out = work / "eval" / f"{model.name}--{body}--{task}.json"
    with (work / "eval.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            run(["eval", "--checkpoint", str(work / "models" / model.name), "--embodiment", body, "--task", task,
                 "--episodes", str(episodes), "--seconds", str(SECONDS.get(task, MANIPULATION_S)), "--json",
                 str(out)], work / "logs" / f"eval-{out.stem}.txt")
    report = json.loads(out.read_text())
    return {"model": model.name, "body": body, "task": task, "successes": report["successes"],
            "episodes": len(report["episodes"]), "success_rate": report["success_rate"], "ci95": report["ci95"],
            "progress": report["progress"],
            "inference_p50_ms": report["inference_p50_ms"]}


def share_episodes(share: float, others: int) -> int:
    """New-body episodes that make `share` of a dataset with `others` episodes of other bodies: n / (others + n)."""
    return max(1, round(share * others / (1 - share)))


def steps_per_body(steps: int, sizes: dict[str, int]) -> dict[str, int]:
    """How many of `steps` batches a model trained on bodies of `sizes` samples draws from each body."""
    return {body: max(1, round(steps * size / sum(sizes.values()))) for body, size in sizes.items()}


def study(args: argparse.Namespace) -> list[Model]:
    """The models, their data (collected if missing) and steps."""
    work, tasks = args.work, tuple(args.task or ["reach"])
    shipped = {body: [collect(work, body, task, args.episodes) for task in tasks] for body in BODIES}
    everything = [folder for folders in shipped.values() for folder in folders]
    per_body = steps_per_body(args.steps, {body: samples(folders, args.image_size)
                                           for body, folders in shipped.items()})
    specialist_steps = round(sum(per_body.values()) / len(per_body))
    models = [Model("generalist", tuple(everything), args.steps, BODIES, tasks)]
    models += [Model(f"specialist-{body}", tuple(folders), per_body[body], (body,), tasks)
               for body, folders in shipped.items()]
    new_tasks = tuple(task for task in tasks if task in NEW_TASKS)
    if not new_tasks:
        return models
    new_full = [collect(work, NEW, task, args.episodes) for task in new_tasks]
    count = max(1, round(share_episodes(args.share, len(everything) * args.episodes) / len(new_tasks)))
    new_share = [share_of(folder, count) for folder in new_full]
    return models + [
        Model("generalist+new", (*everything, *new_share), args.steps, (NEW,), new_tasks),
        Model("generalist+new-ee", (*everything, *new_share), args.steps, (NEW,), new_tasks, "ee_pose"),
        Model("specialist-new-share", tuple(new_share), specialist_steps, (NEW,), new_tasks),
        Model("specialist-new-full", tuple(new_full), specialist_steps, (NEW,), new_tasks)]


def kind(cell: dict) -> str:
    """What a cell's bar is: generalist or specialist on a shipped body, the model itself on the new one."""
    return cell["model"] if cell["body"] == NEW else cell["model"].split("-")[0]


def chart(path: Path, cells: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(dict.fromkeys((c["body"], c["task"]) for c in cells))
    kinds = list(dict.fromkeys(map(kind, cells)))
    colours = dict(zip(kinds, plt.cm.tab10.colors))
    figure, axis = plt.subplots(figsize=(max(7, 1.6 * len(groups)), 4.2))
    width = 0.8 / max(len(kinds), 1)
    for index, (body, task) in enumerate(groups):
        mine = [c for c in cells if (c["body"], c["task"]) == (body, task)]
        for offset, cell in enumerate(mine):
            x = index - 0.4 + width * (offset + 0.5)
            rate, (low, high) = cell["success_rate"], cell["ci95"]
            label = kind(cell)
            axis.bar(x, rate, width, color=colours[label], yerr=[[rate - low], [high - rate]], capsize=3,
                     label=label if label not in axis.get_legend_handles_labels()[1] else None)
            axis.annotate(f"{cell['successes']}/{cell['episodes']}", (x, 0.02), ha="center", fontsize=6,
                          color="white", rotation=90)
    axis.set_xticks(np.arange(len(groups)), [f"{body}\n{task}" for body, task in groups], fontsize=8)
    axis.set_ylim(0, 1.25)  # room for the legend above the bars
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.set_ylabel("success, held-out phrasings (95% Wilson)")
    axis.set_title("one model for every body vs each body's specialist; transfer to a new body")
    axis.legend(fontsize=7, loc="upper center", ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="vla-ros bench generalist", description=__doc__.split("\n")[0])
    parser.add_argument("--task", action="append", help="task (repeatable; default reach)")
    parser.add_argument("--episodes", type=int, default=150, help="demonstrations per body and task (default 150)")
    parser.add_argument("--steps", type=int, default=6000, help="the generalists' training steps (default 6000)")
    parser.add_argument("--share", type=float, default=0.03,
                        help="the new body's share of the transfer generalist's episodes (default 0.03)")
    parser.add_argument("--eval-episodes", type=int, default=40, help="seeded episodes per cell (default 40)")
    parser.add_argument("--image-size", type=int, default=96, help="as `vla-ros train --image-size` (default 96)")
    parser.add_argument("--only", action="append", metavar="MODEL",
                        help="train and evaluate only this model (repeatable: split the study over processes or "
                             "machines sharing --work; the JSON and PNG then hold only these)")
    parser.add_argument("--work", type=Path, default=Path("bench_results/generalist"),
                        help="data, checkpoints, evaluations and logs (reused when there)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/generalist.json"))
    parser.add_argument("--png", type=Path, default=Path("bench_results/generalist.png"))
    args = parser.parse_args()
    if not 0.0 < args.share < 1.0:
        raise SystemExit(f"--share is a fraction between 0 and 1, got {args.share}")
    console = make_console()
    with console.status("collecting demonstrations (skipped where they are)"):
        models = study(args)
    unknown = sorted(set(args.only or ()) - {m.name for m in models})
    if unknown:
        raise SystemExit(f"--only {', '.join(unknown)}: the models are {', '.join(m.name for m in models)}")
    models = [m for m in models if not args.only or m.name in args.only]
    cells = []
    for model in models:  # every model first: evaluations wait for each other (evaluate), training need not
        with console.status(f"training {model.name} ({model.steps} steps on {len(model.data)} datasets)"):
            train(args.work, model)
    for model in models:
        for body in model.bodies:
            for task in model.tasks:
                with console.status(f"evaluating {model.name} on {body} {task} through ROS"):
                    cell = evaluate(args.work, model, body, task, args.eval_episodes)
                cells.append(cell)
                low, high = cell["ci95"]
                console.print(f"{model.name:22s} {body:20s} {task:10s} {cell['successes']}/{cell['episodes']} "
                              f"({low:.0%}-{high:.0%}), mean progress {cell['progress']:.2f}, "
                              f"inference p50 {cell['inference_p50_ms']} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"tasks": args.task or ["reach"], "episodes": args.episodes, "steps": args.steps,
                                     "share": args.share, "models": [{"name": m.name, "steps": m.steps,
                                                                      "data": [str(p) for p in m.data]}
                                                                     for m in models], "cells": cells}, indent=2))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    chart(args.png, cells)
    console.print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
