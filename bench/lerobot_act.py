"""Benchmark: a LeRobot ACT policy trained by LeRobot's own code on exported vla_ros episodes.

The closed loop between the two: scripted-expert demonstrations of one task (`--task`, default
reach:red, since ACT takes no language) are recorded with `vla-ros collect`, written as a
LeRobotDataset v3.0 with `vla-ros export lerobot` (cameras resized to `--image-size` so that the
CPU can train on them), and LeRobot's `lerobot-train` trains ACT on it on the CPU for `--steps`
(ResNet-18 backbone from scratch: no weights are downloaded). The checkpoint then drives the
simulated arm through policy_node and controller_node with `vla-ros eval --policy lerobot`, the
backend serving it out of process from the LeRobot environment, over `--episodes` seeded
episodes with held-out seeds. Writes JSON (success with its Wilson interval, chunk latency
p50/p95, training loss, timings) and a PNG (training loss, success).

Run with `vla-ros bench lerobot_act [--out DIR] [--steps N] [--episodes N] [--lerobot-python PATH]`;
the LeRobot environment comes from `make lerobot-setup`. Each stage is skipped when its output
exists, and training resumes LeRobot's last checkpoint (saved every 1000 steps) when it has fewer
than `--steps`, so an interrupted or shorter run goes on where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ACT_SETTINGS = {  # a smaller ACT than LeRobot's default (17 M parameters), to train on two CPU cores
    "policy.type": "act", "policy.device": "cpu", "policy.push_to_hub": "false",
    "policy.pretrained_backbone_weights": "null", "policy.dim_model": "256", "policy.dim_feedforward": "1024",
    "policy.n_encoder_layers": "2", "policy.chunk_size": "20", "policy.n_action_steps": "20",
    "policy.optimizer_lr": "1e-4", "policy.optimizer_lr_backbone": "1e-4",
    "dataset.video_backend": "pyav", "num_workers": "0", "eval_freq": "0", "wandb.enable": "false",
}
LOG_EVERY = 50  # steps between LeRobot's log lines (it prints the step rounded: "step:2K")
LOSS_LINE = re.compile(r"step:\S+ .*?loss:([0-9.]+)")


def vla_ros(*args: str, **kwargs) -> None:
    subprocess.run([sys.executable, "-m", "vla_ros.cli", *args], check=True, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(prog="vla-ros bench lerobot_act", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/lerobot_act"), help="working directory")
    parser.add_argument("--task", default="reach:red", help="the one task (default reach:red)")
    parser.add_argument("--demonstrations", type=int, default=100, help="expert episodes recorded (default 100)")
    parser.add_argument("--image-size", type=int, default=96, help="cameras resized to N x N (default 96)")
    parser.add_argument("--steps", type=int, default=5000,
                        help="ACT training steps (default 5000); a shorter earlier run in OUT is resumed")
    parser.add_argument("--batch-size", type=int, default=8, help="ACT batch size (default 8)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (default 20)")
    parser.add_argument("--lerobot-python", type=Path,
                        default=Path(os.environ.get("VLA_ROS_LEROBOT_PYTHON", ".venv-lerobot/bin/python")),
                        help="python of the LeRobot environment (default $VLA_ROS_LEROBOT_PYTHON or "
                             ".venv-lerobot/bin/python)")
    parser.add_argument("--json", type=Path, help="report (default OUT/lerobot_act.json)")
    parser.add_argument("--png", type=Path, help="plot (default OUT/lerobot_act.png)")
    args = parser.parse_args()
    python = args.lerobot_python.absolute()
    if not python.exists():
        sys.exit(f"no LeRobot environment at {python}: run `make lerobot-setup`, or pass --lerobot-python")
    out = args.out.absolute()
    episodes, dataset, training = out / "episodes", out / "dataset", out / "train"
    timings = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}

    started = time.monotonic()
    if len(list(episodes.glob("*/metadata.yaml"))) < args.demonstrations:
        vla_ros("collect", "--embodiment", "arm7", "--task", args.task, "--episodes", str(args.demonstrations),
                "--out", str(episodes), env=env)
    timings["collect_s"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    if not (dataset / "meta" / "info.json").exists():
        vla_ros("export", "lerobot", str(episodes), "--out", str(dataset), "--image-size", str(args.image_size),
                env=env)
    timings["export_s"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    checkpoint = training / "checkpoints" / "last" / "pretrained_model"
    state = training / "checkpoints" / "last" / "training_state" / "training_step.json"
    log = out / "train.log"
    trained = json.loads(state.read_text())["step"] if state.exists() else 0
    if trained < args.steps:
        if trained:  # a shorter run before: LeRobot resumes it, optimizer state and all
            settings = {"config_path": str(checkpoint / "train_config.json"), "resume": "true"}
        else:
            settings = {**ACT_SETTINGS, "dataset.repo_id": f"local/{dataset.name}", "dataset.root": str(dataset),
                        "output_dir": str(training), "batch_size": str(args.batch_size), "log_freq": str(LOG_EVERY),
                        "seed": "0"}
        settings.update({"steps": str(args.steps), "save_freq": "1000"})
        with log.open("a") as file:
            subprocess.run([str(python), "-m", "lerobot.scripts.lerobot_train",
                            *(f"--{key}={value}" for key, value in settings.items())],
                           check=True, stdout=file, stderr=subprocess.STDOUT, env=env)
        timings["train_s"] = round(time.monotonic() - started, 1)
    losses = [((i + 1) * LOG_EVERY, float(loss)) for i, loss in enumerate(LOSS_LINE.findall(log.read_text()))] \
        if log.exists() else []

    started = time.monotonic()
    evaluation = out / "eval.json"
    vla_ros("eval", "--embodiment", "arm7", "--task", args.task, "--episodes", str(args.episodes),
            "--policy", "lerobot", "--policy-param", f"checkpoint={checkpoint}",
            "--policy-param", f"python={python}", "--json", str(evaluation), "--sheet", str(out / "sheet.png"),
            env=env)
    timings["eval_s"] = round(time.monotonic() - started, 1)
    report = json.loads(evaluation.read_text())
    info = json.loads((dataset / "meta" / "info.json").read_text())
    result = {
        "task": args.task, "demonstrations": args.demonstrations, "frames": info["total_frames"],
        "fps": info["fps"], "image_size": args.image_size, "act": ACT_SETTINGS, "steps": args.steps,
        "batch_size": args.batch_size, "final_loss": losses[-1][1] if losses else None, "losses": losses,
        "evaluation": report, "timings": timings,
    }
    json_path = args.json or out / "lerobot_act.json"
    json_path.write_text(json.dumps(result, indent=2))
    plot(result, args.png or out / "lerobot_act.png")
    print(f"ACT on {args.demonstrations} exported {args.task} demonstrations, {args.steps} steps: "
          f"{report.get('successes')}/{len(report.get('episodes', []))} episodes; wrote {json_path}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, success_axes) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=(2, 1))
    if result["losses"]:
        steps, losses = zip(*result["losses"])
        loss_axes.plot(steps, losses)
        loss_axes.set_yscale("log")
    loss_axes.set(xlabel="step", ylabel="training loss (L1 + KL)", title="LeRobot ACT, lerobot-train on the CPU")
    evaluation = result["evaluation"]
    rate = evaluation.get("success_rate", 0.0)
    low, high = evaluation.get("ci95", [rate, rate])
    success_axes.bar([result["task"]], [rate], yerr=[[rate - low], [high - rate]], capsize=8)
    success_axes.set(ylim=(0, 1), ylabel="success rate (95% Wilson)",
                     title=f"{len(evaluation.get('episodes', []))} episodes through the ROS graph")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
