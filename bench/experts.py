"""Reliability of the scripted experts: success and failure reasons per body and task over seeded episodes.

In-process by default (world, hardware, expert stepped together: exactly repeatable, fast), or
with `--ros` through the graph as `vla-ros sim` runs it (sim_node and the expert node over DDS,
real time). Writes the rates with 95% Wilson intervals and the failures by reason, as JSON and as
a PNG chart. Run with `vla-ros bench experts [--body B]... [--task T]... [--episodes N] [--seed S]
[--ros] [--json OUT] [--png OUT]`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from vla_ros.embodiment import load_embodiment
from vla_ros.sim.episode import run_expert_episode
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.tasks import failure_reason
from vla_ros.sim.world import World
from vla_ros.stats import wilson_interval
from vla_ros.terminal import console as make_console

BODIES = ("arm7", "humanoid_upper", "mobile_manipulator")
TASKS = ("pick", "pick_place", "stack")
SECONDS = 15.0  # sim time limit per episode
VLA_ROS = str(Path(sys.executable).parent / "vla-ros")


def in_process(body: str, task: str, seeds: range) -> list[dict]:
    world = World(load_embodiment(body))
    hardware = SimHardware(world)
    episodes = []
    for seed in seeds:
        last = {}
        result = run_expert_episode(world, hardware, task, seed, SECONDS, lambda w, t, status: last.update(s=status))
        detail = last["s"].detail if last else ""
        episodes.append({"seed": seed, "task": result.task, "success": result.success, "detail": detail})
    return episodes


def through_ros(body: str, task: str, seeds: range) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "sim.json"
        subprocess.run([VLA_ROS, "sim", body, "--task", task, "--episodes", str(len(seeds)), "--seed",
                        str(seeds.start), "--seconds", str(SECONDS), "--json", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        results = json.loads(out.read_text())["results"]
    return [{"seed": r["seed"], "task": r["task"], "success": r["success"], "detail": r["detail"]} for r in results]


def summary(episodes: list[dict]) -> dict:
    successes = sum(e["success"] for e in episodes)
    failures: dict[str, int] = {}
    for episode in episodes:
        if not episode["success"]:
            reason = failure_reason(episode["detail"])
            failures[reason] = failures.get(reason, 0) + 1
    return {"successes": successes, "episodes": len(episodes), "success_rate": successes / max(len(episodes), 1),
            "ci95": list(wilson_interval(successes, len(episodes))), "failures": failures}


def chart(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [(body, task, s) for body, tasks in results.items() for task, s in tasks.items()]
    figure, axis = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    x = np.arange(len(rows))
    rates = np.array([s["success_rate"] for *_, s in rows])
    low = rates - np.array([s["ci95"][0] for *_, s in rows])
    high = np.array([s["ci95"][1] for *_, s in rows]) - rates
    axis.bar(x, rates, color="tab:green", yerr=[low, high], capsize=4)
    axis.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    axis.set_xticks(x, [f"{body}\n{task}" for body, task, _ in rows], fontsize=7)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("success rate (95% Wilson interval)")
    for index, (*_, s) in enumerate(rows):
        axis.annotate(f"{s['successes']}/{s['episodes']}", (index, 0.02), ha="center", fontsize=7, color="white")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="vla-ros bench experts", description=__doc__.split("\n")[0])
    parser.add_argument("--body", action="append", help=f"embodiment (repeatable; default {', '.join(BODIES)})")
    parser.add_argument("--task", action="append", help=f"task spec (repeatable; default {', '.join(TASKS)})")
    parser.add_argument("--episodes", type=int, default=40, help="seeded episodes per body and task (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    parser.add_argument("--ros", action="store_true", help="through sim_node and the expert node over DDS")
    parser.add_argument("--json", type=Path, default=Path("bench_results/experts.json"))
    parser.add_argument("--png", type=Path, default=Path("bench_results/experts.png"))
    args = parser.parse_args()
    console = make_console()
    seeds = range(args.seed, args.seed + args.episodes)
    results: dict[str, dict[str, dict]] = {}
    for body in args.body or BODIES:
        for task in args.task or TASKS:
            episodes = (through_ros if args.ros else in_process)(body, task, seeds)
            results.setdefault(body, {})[task] = {**summary(episodes), "runs": episodes}
            s = results[body][task]
            console.print(f"{body} {task}: {s['successes']}/{s['episodes']} ({s['ci95'][0]:.0%}-{s['ci95'][1]:.0%}) "
                          f"failures {s['failures'] or 'none'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"ros": args.ros, "seed": args.seed, "seconds": SECONDS, "results": results},
                                    indent=2))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    chart(args.png, results)
    console.print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
