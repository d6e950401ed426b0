"""Soak: the sim graph with the built-in policy for a long time under a CPU hog; rates, memory, refusals over time.

`vla-ros up arm7 --sim` with the built-in VLA (as `vla-ros eval` starts it: sim_node, controller_node,
policy_node as processes over DDS), plus a process spinning on one core the whole time (the hog).
Episodes of the task run back to back (seeds from 0) for `--minutes`. After each one, a sample: every
node's resident memory (/proc), the controller's achieved rate, period error p99, overruns, chunks
accepted and refused, bad joint states, following faults; the policy's chunks/s, inference p50,
errors and refused inputs. The report: each node's memory at the start (after the first
`WARMUP_EPISODES`) and the end and its growth per hour (a least-squares line through the samples
after the warm-up), the rates' worst and median, the counts' totals, the episodes' success rate.
Writes JSON and a PNG (memory and rates over time).
Run with `vla-ros bench soak [--minutes N] [--task T] [--seconds S] [--json OUT] [--png OUT]`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WARMUP_EPISODES = 3  # model loads, caches and DDS discovery settle first
HOG = "while True: pass"  # one core, busy for the whole run


def rss_mb(pid: int) -> float:
    """[MB] resident memory of process `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def number(status: dict, key: str) -> float:
    try:
        return float(status.get(key, "nan"))
    except ValueError:
        return float("nan")


def count(status: dict, key: str) -> int | None:
    """A counter from a status; None when the status lacks it (no report yet)."""
    value = number(status, key)
    return int(value) if np.isfinite(value) else None


def growth_mb_per_hour(times_s: list[float], values: list[float]) -> float:
    """The slope of a least-squares line through (time, memory), in MB per hour."""
    if len(times_s) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(times_s) / 3600.0, values, 1)[0])


def summarise(args: argparse.Namespace, samples: list[dict], episodes: int, successes: int) -> dict:
    """The report on `samples` so far (see the module docstring)."""
    settled = samples[WARMUP_EPISODES:] or samples
    nodes = list(samples[0]["rss_mb"]) if samples else []
    memory = {node: {"start_mb": settled[0]["rss_mb"][node], "end_mb": settled[-1]["rss_mb"][node],
                     "growth_mb_per_hour": round(growth_mb_per_hour([s["t_s"] for s in settled],
                                                                    [s["rss_mb"][node] for s in settled]), 2)}
              for node in nodes}
    rates = [s["controller"]["rate_hz"] for s in settled] or [float("nan")]
    chunks = [s["policy"]["chunks_per_s"] for s in settled] or [float("nan")]
    last = samples[-1] if samples else {"controller": {}, "policy": {}}
    return {"embodiment": args.embodiment, "task": args.task, "minutes": args.minutes, "episodes": episodes,
            "successes": successes, "memory": memory,
            "controller_rate_hz": {"min": float(np.nanmin(rates)), "median": float(np.nanmedian(rates))},
            "policy_chunks_per_s": {"min": float(np.nanmin(chunks)), "median": float(np.nanmedian(chunks))},
            "totals": {**last["controller"], **{f"policy_{k}": v for k, v in last["policy"].items()}},
            "samples": samples}


def write(args: argparse.Namespace, result: dict) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


def chart(path: Path, samples: list[dict], nodes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t_s"] / 60 for s in samples]
    figure, (memory, rates) = plt.subplots(1, 2, figsize=(12, 4))
    for node in nodes:
        memory.plot(minutes, [s["rss_mb"][node] for s in samples], label=node)
    memory.set_xlabel("minutes")
    memory.set_ylabel("resident memory [MB]")
    memory.legend(fontsize=7)
    rates.plot(minutes, [s["controller"]["rate_hz"] for s in samples], label="controller rate [Hz]")
    rates.set_xlabel("minutes")
    rates.set_ylabel("Hz")
    twin = rates.twinx()
    twin.plot(minutes, [s["policy"]["chunks_per_s"] for s in samples], color="tab:orange", label="policy chunks/s")
    twin.set_ylabel("chunks/s")
    rates.legend(loc="lower left", fontsize=7)
    twin.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    from vla_ros.bringup import Options
    from vla_ros.embodiment import load_embodiment
    from vla_ros.rollout import Rollout
    from vla_ros.terminal import console as make_console

    parser = argparse.ArgumentParser(prog="vla-ros bench soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--embodiment", default="arm7", help="the body (default arm7)")
    parser.add_argument("--task", default="reach", help="the episodes' task (default reach)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each episode's length (default 10)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/soak.json"))
    parser.add_argument("--png", type=Path, default=Path("bench_results/soak.png"))
    args = parser.parse_args()
    console = make_console()
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    robot = load_embodiment(args.embodiment)
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    samples, successes, episodes = [], 0, 0
    try:
        with Rollout(robot, Options(args.embodiment, policy="builtin")) as rollout:
            rollout.wait_ready()
            controller = rollout.client.watch_diagnostics("controller_node")
            pids = {name: child.pid for name, child in rollout.graph.children.items()}
            started = time.monotonic()
            while time.monotonic() - started < args.minutes * 60:
                report = rollout.episode(args.task, episodes, args.seconds)
                episodes += 1
                successes += report.outcome.success
                policy, control = (report.reports[-1] if report.reports else {}), (controller[-1] if controller else {})
                controller.clear()
                samples.append({
                    "t_s": round(time.monotonic() - started, 1), "episode": episodes,
                    "rss_mb": {name: round(rss_mb(pid), 1) for name, pid in pids.items()},
                    "controller": {"rate_hz": number(control, "rate_hz_achieved"),
                                   "period_error_p99_us": number(control, "period_error_p99_us"),
                                   **{key: count(control, key) for key in (
                                       "overruns", "chunks_accepted", "chunks_rejected", "bad_joint_states",
                                       "following_faults")}},
                    "policy": {"chunks_per_s": number(policy, "chunks_per_s"),
                               "inference_p50_ms": number(policy, "inference_p50_ms"),
                               **{key: count(policy, key) for key in (
                                   "errors", "rejected_frames", "rejected_joint_states", "rejected_instructions")}},
                })
                write(args, summarise(args, samples, episodes, successes))  # a run cut short keeps its samples
                console.print(f"{samples[-1]['t_s'] / 60:5.1f} min, episode {episodes}: memory "
                              f"{samples[-1]['rss_mb']}, controller {samples[-1]['controller']['rate_hz']:.1f} Hz, "
                              f"policy {samples[-1]['policy']['chunks_per_s']:.2f} chunks/s")
    finally:
        hog.kill()
        hog.wait()
    result = summarise(args, samples, episodes, successes)
    write(args, result)
    chart(args.png, samples, list(result["memory"]))
    memory = result["memory"]
    console.print(f"{episodes} episodes ({successes} succeeded) in {args.minutes:g} min; memory growth "
                  f"{ {n: m['growth_mb_per_hour'] for n, m in memory.items()} } MB/h; controller "
                  f"{result['controller_rate_hz']['min']:.1f}-{result['controller_rate_hz']['median']:.1f} Hz")


if __name__ == "__main__":
    main()
