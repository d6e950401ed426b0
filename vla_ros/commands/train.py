"""`vla-ros train`: train the built-in VLA on recorded episodes and write a checkpoint."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path


def register(verbs) -> None:
    parser = verbs.add_parser("train", help="train the built-in VLA on episode bags or LeRobot datasets and write a "
                                            "checkpoint")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="dataset directories: bags in or under them, or a LeRobotDataset v3.0's root")
    parser.add_argument("--embodiment",
                        help="embodiment name or file a LeRobot dataset is read for (default: its robot_type); the "
                             "file's lerobot: section maps the dataset's names")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps in total (default 4000)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, batches, noise and weights (default 0)")
    parser.add_argument("--horizon", type=int, default=16, help="actions per chunk (default 16)")
    parser.add_argument("--dt", type=float, default=0.05, help="seconds between actions (default 0.05)")
    parser.add_argument("--image-size", type=int, default=96,
                        help="cameras are resized to this square size (default 96)")
    parser.add_argument("--validation", type=float, default=0.1, help="fraction of episodes held out (default 0.1)")
    parser.add_argument("--validate-every", type=int, default=250, help="steps between validations and checkpoints")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", type=Path, help="continue a checkpoint written by train (same data) up to --steps")
    start.add_argument("--init", type=Path,
                       help="fine-tune: start from a checkpoint's weights, statistics, chunk and architecture, with a "
                            "fresh optimizer and step count; bodies in the data it does not know are added to it")
    parser.add_argument("--action-space", choices=("joint_position", "ee_pose"),
                        help="what the model learns to output for the arms: joint positions (default), or tool poses "
                             "followed through IK (ee_pose); a checkpoint given to --init or --resume keeps its own")
    parser.add_argument("--include-failures", action="store_true", help="train on failed episodes too")
    parser.add_argument("--flywheel", default="", metavar="SOURCES",
                        help="learn from episodes recorded in deployment (recorder_node) through these sources, "
                             "comma-separated: interventions, relabel, corrections, outcomes, or all (default: "
                             "such episodes are read like any other)")
    parser.add_argument("--paraphrase", action="store_true",
                        help="word each drawn frame in any instruction the data has for its episode's task, not only "
                             "the one it was recorded with")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from vla_ros.data.dataset import cached_samples, find_recordings
    from vla_ros.data.flywheel import deployment_pieces, is_deployment, parse_sources
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.model.checkpoint import load_checkpoint, load_optimizer, read_config, save_checkpoint
    from vla_ros.model.config import Architecture
    from vla_ros.model.ee_actions import JOINT
    from vla_ros.model.language import shared_encoder
    from vla_ros.model.network import VLA
    from vla_ros.model.training import (
        Batches,
        TrainSettings,
        add_embodiments,
        code_actions,
        history_from_json,
        history_to_json,
        make_optimizer,
        model_config,
        plot_losses,
        task_wordings,
        train,
    )
    from vla_ros.terminal import console as make_console

    console = make_console()
    torch.manual_seed(args.seed)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                             validate_every=args.validate_every, paraphrase=args.paraphrase)
    base = args.resume or args.init
    based = read_config(base) if base else None
    horizon, dt = (based.horizon, based.dt) if based else (args.horizon, args.dt)
    architecture = based.architecture if based else Architecture(image_size=(args.image_size, args.image_size))

    sources = parse_sources(args.flywheel)
    bags, skipped = [], 0
    for recording in find_recordings(args.data, args.embodiment):
        info = recording.info
        if "embodiment" not in info:
            raise VlaRosError(f"{recording.name}: metadata.yaml custom_data names no embodiment (not recorded by "
                              f"vla_ros?)")
        deployed = bool(sources) and is_deployment(info)  # the sources choose its samples, failures too
        if not deployed and info.get("outcome.success") != "true" and not args.include_failures:
            skipped += 1
            continue
        bags.append((recording, info, deployed))
    if not bags:
        raise VlaRosError(f"no successful episodes in {', '.join(map(str, args.data))} ({skipped} failed ones skipped)")
    embodiments = {}
    for recording, info, _ in bags:
        if info["embodiment"] not in embodiments:
            embodiments[info["embodiment"]] = recording.embodiment or load_embodiment(info["embodiment"])
    embodiments = dict(sorted(embodiments.items()))
    order = np.random.default_rng(args.seed).permutation(len(bags))
    held = max(1, round(args.validation * len(bags))) if args.validation > 0 and len(bags) > 1 else 0
    validation_bags = {int(i) for i in order[:held]}

    samples = {"train": [], "validation": []}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("reading episodes (cached after the first time)", total=len(bags))
        for index, (recording, info, deployed) in enumerate(bags):
            embodiment = embodiments[info["embodiment"]]
            episode = cached_samples(recording, embodiment, horizon, dt, architecture.image_size)
            pieces = deployment_pieces(recording.meta(), episode, embodiment, horizon, dt, sources) if deployed \
                else [episode]
            samples["validation" if index in validation_bags else "train"].extend(pieces)
            progress.update(bar, advance=1)
    if sources:
        console.print(f"--flywheel {','.join(sources)}: {sum(b[2] for b in bags)} deployment episodes")

    space = based.action_space if based else args.action_space or JOINT
    if args.action_space and args.action_space != space:
        raise VlaRosError(f"--action-space {args.action_space}: {base} learned {space}; it keeps it")
    samples = {split: code_actions(episodes, embodiments, space) for split, episodes in samples.items()}
    if base:
        model = load_checkpoint(base)
        missing = sorted(set(embodiments) - set(model.config.embodiments))
        if missing and args.resume:
            raise VlaRosError(f"--resume {base}: the checkpoint has no statistics for {', '.join(missing)} (add a "
                              "body with --init, which starts a new run)")
        if missing:
            model = add_embodiments(model, samples["train"], embodiments)
            console.print(f"--init {base}: added {', '.join(missing)} to the bodies it knows "
                          f"({', '.join(model.config.embodiments)})")
    else:
        model = VLA(model_config(samples["train"], embodiments, horizon, dt, architecture, space))
    model.config.instructions = task_wordings(samples["train"] + samples["validation"], model.config.instructions)
    optimizer = make_optimizer(model, settings)
    start_step, history, elapsed_before = 0, None, 0.0
    if args.resume:
        state = load_optimizer(args.resume, model, optimizer)
        start_step, history = int(state["step"]), history_from_json(state["history"])
        elapsed_before = float(state.get("seconds", 0.0))
        if start_step >= settings.steps:
            raise VlaRosError(f"--resume {args.resume} is at step {start_step} already; ask for more --steps")
    encoder = shared_encoder()
    training = Batches(samples["train"], model.config, encoder, settings.paraphrase)
    validation = Batches(samples["validation"], model.config, encoder)
    instructions = sorted({t for split in samples.values() for s in split for t in s.instructions})
    summary = {
        "data": [str(p) for p in args.data], "episodes": len(bags), "failed_episodes_skipped": skipped,
        "validation_episodes": held, "training_samples": len(training), "validation_samples": len(validation),
        "tasks": sorted({s.task for split in samples.values() for s in split}), "instructions": instructions,
        "embodiments": sorted(embodiments), "action_space": space, "settings": asdict(settings),
        "init": str(args.init) if args.init else None,
        "flywheel": {"sources": list(sources), "deployment_episodes": sum(b[2] for b in bags)},
    }
    parameters = sum(p.numel() for p in model.parameters())
    console.print(f"{len(bags)} episodes ({held} for validation), {len(training)} training samples, "
                  f"{len(instructions)} distinct instructions; model {parameters / 1e6:.2f} M parameters, "
                  f"chunk {horizon} x {dt} s, {architecture.denoising_steps} denoising steps")
    started = time.monotonic()

    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        bar = progress.add_task("train", total=settings.steps, completed=start_step, status="")
        last = {"validation": ""}

        def on_step(step: int, loss: float) -> None:
            progress.update(bar, completed=step, status=f"loss {loss:.4f} {last['validation']}")

        def on_validation(step: int, loss: float, error: float, goal_error: float) -> None:
            last["validation"] = f"val {loss:.4f}, |a| err {error:.4f}, goal err {goal_error:.3f} m"
            progress.console.print(f"step {step}: validation loss {loss:.4f}, sampled chunk error {error:.4f} rad | m, "
                                   f"goal error {goal_error:.3f} m")

        def on_checkpoint(step: int, history) -> None:
            seconds = elapsed_before + time.monotonic() - started
            model.config.training = {**summary, "step": step, "seconds": round(seconds, 1),
                                     "final_validation_loss": history.validation[-1][1] if history.validation else None,
                                     "final_action_error":
                                         history.action_error[-1][1] if history.action_error else None,
                                     "final_goal_error_m": history.goal_error[-1][1] if history.goal_error else None}
            save_checkpoint(args.out, model, optimizer,
                            {"step": step, "seconds": seconds, "history": history_to_json(history)})
            plot_losses(history, args.out / "loss.png", f"vla_ros builtin ({', '.join(embodiments)})")

        history = train(model, optimizer, training, validation, settings, start_step, history,
                        on_step, on_validation, on_checkpoint)
    console.print(f"wrote {args.out} (model.safetensors, config.json, loss.png) after "
                  f"{elapsed_before + time.monotonic() - started:.0f} s of training")
    return 0
