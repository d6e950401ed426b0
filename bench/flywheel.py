"""The data flywheel, measured: a weak policy deployed with an operator, then retrained on what happened.

The study, end to end (each stage skipped when its output is there, so an interrupted run continues):
1. collect reach demonstrations on arm7 (`vla-ros collect`); `weak` is trained on the first `--base` of
   them for `--steps` steps: a deliberately weak policy.
2. deploy `weak` for `--deploy-episodes` episodes (seeds from DEPLOY_SEED, training phrasings) through
   the ROS graph with recorder_node, teleop_node (`input:=leader`) and the scripted operator
   (operator_node): it takes over when the tool heads for the wrong cube or stalls, says a
   correction, drives until the task holds and labels every episode.
3. the operator's time: seconds it drove and words it said, from the recorded outcomes; the
   `demos` arm gets as many new demonstrations as the seconds it drove would have recorded (the
   base demonstrations' mean length).
4. retrain from `weak` (`train --init`), each for `--more-steps` steps:
   - `flywheel`: the base demonstrations and the deployment episodes, `--flywheel all`;
   - `base-only`: the base demonstrations alone (the same compute, no flywheel data);
   - `demos`: the base and the new demonstrations (the operator's time spent demonstrating);
   - `only-SOURCE` for each flywheel source (the per-source ablation).
5. evaluate every model through the ROS graph (`vla-ros eval`): held-out phrasings, seeds 1000 on.
Writes JSON (every model: successes, Wilson interval, mean progress; the operator's time) and a PNG.
Run with `vla-ros bench flywheel [--demos N] [--base N] [--steps N] [--more-steps N] [--deploy-episodes N]
[--eval-episodes N] [--no-ablation] [--work DIR] [--json OUT] [--png OUT]`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import runpy
from pathlib import Path

from vla_ros.data.bag import read_episode, read_info
from vla_ros.data.flywheel import SOURCES
from vla_ros.terminal import console as make_console

BODY, TASK = "arm7", "reach"
COLLECT_SEED, DEPLOY_SEED = 40000, 50000
SECONDS = 10.0  # per episode, deployed and evaluated
OPERATOR_MARGIN_S = 0.5  # the operator labels a timeout this long before the episode is cut
# The study's plumbing is the generalist study's: `vla-ros` verbs on one DDS domain, datasets, subsets.
STUDY = runpy.run_path(str(Path(__file__).with_name("generalist.py")), run_name="bench_generalist")
ENV, run, bags, first = STUDY["ENV"], STUDY["run"], STUDY["bags"], STUDY["share_of"]


def demonstrations(work: Path, count: int) -> Path:
    folder = work / "data" / "demos"
    if len(bags(folder)) < count:
        run(["collect", "--embodiment", BODY, "--task", TASK, "--episodes", str(count), "--seed", str(COLLECT_SEED),
             "--seconds", str(SECONDS + 5), "--out", str(folder)], work / "logs" / "collect.txt")
    return folder


def train(work: Path, name: str, data: list[Path], steps: int, *extra: str) -> Path:
    out = work / "models" / name
    config = out / "config.json"
    if not (config.exists() and json.loads(config.read_text())["training"].get("step") == steps):
        run(["train", "--data", *map(str, data), "--out", str(out), "--steps", str(steps), "--validate-every",
             str(max(steps // 2, 1)), *extra], work / "logs" / f"train-{name}.txt")
    return out


def deploy(work: Path, checkpoint: Path, episodes: int) -> Path:
    """Episodes of `checkpoint` in the graph with the recorder, teleop and the operator; their folder."""
    from vla_ros.bringup import NodeSpec, Options
    from vla_ros.embodiment import load_embodiment
    from vla_ros.rollout import Rollout

    out = work / "data" / "deployment"
    done = operator_time(out)["labelled"]  # the graph's start records an unlabelled episode too
    if done >= episodes:
        return out
    options = Options(BODY, policy="builtin", checkpoint=str(checkpoint), record=True, record_dir=str(out),
                      teleop="leader", phrasing="train")
    operator = NodeSpec("operator_node", "operator_node", "", {"embodiment": BODY, "seed": done,
                                                                "seconds": SECONDS - OPERATOR_MARGIN_S,
                                                                "diagnostics_period_s": 0.2})
    os.environ.update(ENV)
    with Rollout(load_embodiment(BODY), options, log_dir=work / "logs" / "deploy") as rollout:
        rollout.wait_ready()
        reports = rollout.client.watch_diagnostics(operator.name)
        rollout.graph.start(operator.name, operator.argv())

        def labels() -> int:
            return int(reports[-1]["labels"]) if reports else -1

        # Its first look labels the episode the graph started with (long over): let that pass.
        rollout.client.spin_until(lambda: len(reports) >= 5, 60, "the operator's first reports")
        for index in range(done, episodes):
            before = labels()
            rollout.episode(TASK, DEPLOY_SEED + index, SECONDS)
            # A person labels an episode before the next begins: ~/finish labels the one under way.
            rollout.client.spin_until(lambda: labels() > before, 15, "the operator's label of the episode")
    return out


def operator_time(folder: Path) -> dict:
    """What the operator spent on the deployment episodes: seconds driven, corrections and their words."""
    seconds, corrections, words, takeovers, labelled = 0.0, 0, 0, 0, 0
    for bag in bags(folder):
        info = read_info(bag)
        said = json.loads(info.get("outcome.corrections", "[]"))
        driven = json.loads(info.get("outcome.interventions", "[]"))
        seconds += sum(end - start for start, end in driven)
        takeovers += len(driven)
        corrections += len(said)
        words += sum(len(text.split()) for text in said)
        labelled += info.get("outcome.success") in ("true", "false")
    return {"episodes": len(bags(folder)), "labelled": labelled, "takeovers": takeovers,
            "takeover_s": round(seconds, 2), "corrections": corrections, "correction_words": words}


def mean_length(folder: Path) -> float:
    """[s] the mean length of the demonstrations in `folder`."""
    lengths = [read_episode(bag, cameras=False).joint_states.times[-1] for bag in bags(folder)]
    return sum(lengths) / len(lengths)


def evaluate(work: Path, name: str, episodes: int) -> dict:
    out = work / "eval" / f"{name}.json"
    if not out.exists():
        run(["eval", "--checkpoint", str(work / "models" / name), "--embodiment", BODY, "--task", TASK,
             "--episodes", str(episodes), "--seconds", str(SECONDS), "--json", str(out)],
            work / "logs" / f"eval-{name}.txt")
    report = json.loads(out.read_text())
    return {"model": name, "successes": report["successes"], "episodes": len(report["episodes"]),
            "success_rate": report["success_rate"], "ci95": report["ci95"], "progress": report["progress"]}


def chart(path: Path, cells: list[dict], spent: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(cells)), 4))
    for x, cell in enumerate(cells):
        rate, (low, high) = cell["success_rate"], cell["ci95"]
        axis.bar(x, rate, 0.7, yerr=[[rate - low], [high - rate]], capsize=3,
                 color="tab:green" if cell["model"] == "flywheel" else "tab:blue")
        axis.annotate(f"{cell['successes']}/{cell['episodes']}", (x, 0.02), ha="center", fontsize=7, color="white")
    axis.set_xticks(range(len(cells)), [c["model"] for c in cells], fontsize=7, rotation=20)
    axis.set_ylim(0, 1)
    axis.set_ylabel("reach success, held-out phrasings (95% Wilson)")
    axis.set_title(f"one flywheel round: {spent['takeover_s']:.0f} s of takeovers, {spent['correction_words']} words "
                   f"of corrections over {spent['labelled']} episodes", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="vla-ros bench flywheel", description=__doc__.split("\n")[0])
    parser.add_argument("--demos", type=int, default=150, help="demonstrations collected (default 150)")
    parser.add_argument("--base", type=int, default=20, help="of them, the weak policy's (default 20)")
    parser.add_argument("--steps", type=int, default=2000, help="the weak policy's training steps (default 2000)")
    parser.add_argument("--more-steps", type=int, default=1500,
                        help="each retraining's steps from the weak policy (default 1500)")
    parser.add_argument("--deploy-episodes", type=int, default=40, help="deployment episodes (default 40)")
    parser.add_argument("--eval-episodes", type=int, default=40, help="seeded evaluation episodes (default 40)")
    parser.add_argument("--no-ablation", action="store_true", help="leave out the one-source models")
    parser.add_argument("--work", type=Path, default=Path("bench_results/flywheel"),
                        help="data, checkpoints, evaluations and logs (reused when there)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/flywheel.json"))
    parser.add_argument("--png", type=Path, default=Path("bench_results/flywheel.png"))
    args = parser.parse_args()
    console = make_console()
    work = args.work
    with console.status("collecting demonstrations (skipped where they are)"):
        pool = demonstrations(work, args.demos)
    base = first(pool, args.base)
    with console.status(f"training the weak policy ({args.steps} steps on {args.base} demonstrations)"):
        weak = train(work, "weak", [base], args.steps)
    with console.status(f"deploying it for {args.deploy_episodes} episodes with the scripted operator"):
        deployment = deploy(work, weak, args.deploy_episodes)
    spent = operator_time(deployment)
    extra = max(1, math.ceil(spent["takeover_s"] / mean_length(base)))
    console.print(f"operator: {spent['takeovers']} takeovers, {spent['takeover_s']:.1f} s, {spent['corrections']} "
                  f"corrections ({spent['correction_words']} words) over {spent['episodes']} episodes; as "
                  f"demonstrations: {extra}")
    arms = {"flywheel": ([base, deployment], ["--flywheel", "all"]), "base-only": ([base], []),
            "demos": ([first(pool, args.base + extra)], [])}
    if not args.no_ablation:
        arms.update({f"only-{source}": ([base, deployment], ["--flywheel", source]) for source in SOURCES})
    for name, (data, options) in arms.items():
        with console.status(f"training {name} ({args.more_steps} steps from weak)"):
            train(work, name, data, args.more_steps, "--init", str(weak), *options)
    cells = []
    for name in ["weak", *arms]:
        with console.status(f"evaluating {name} through ROS"):
            cell = evaluate(work, name, args.eval_episodes)
        cells.append(cell)
        low, high = cell["ci95"]
        console.print(f"{name:22s} {cell['successes']}/{cell['episodes']} ({low:.0%}-{high:.0%}), "
                      f"mean progress {cell['progress']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "body": BODY, "task": TASK, "demos": args.demos, "base": args.base, "steps": args.steps,
        "more_steps": args.more_steps, "deploy_episodes": args.deploy_episodes, "operator": spent,
        "extra_demonstrations": extra, "cells": cells}, indent=2))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    chart(args.png, cells, spent)
    console.print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
