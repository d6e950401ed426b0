"""`vla-ros collect`: record scripted-expert demonstrations in the simulator, one rosbag2 (MCAP) per episode."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(verbs) -> None:
    parser = verbs.add_parser("collect", help="record scripted demonstrations in the simulator as rosbag2 (MCAP) bags")
    parser.add_argument("--embodiment", required=True, help="embodiment name (arm7, ...) or file")
    parser.add_argument("--task", action="append", required=True,
                        help="task spec (reach, reach:red, push:blue:left, ...); repeat for several tasks")
    parser.add_argument("--episodes", type=int, required=True, help="episodes per task")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory (bags are added to it)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the first episode; the next ones count up (default 0)")
    parser.add_argument("--seconds", type=float, default=10.0, help="sim time limit per episode (default 10)")
    parser.add_argument("--linger", type=float, default=1.0,
                        help="seconds recorded after success, the expert holding still (default 1)")
    parser.add_argument("--phrasing", default="train", choices=("train", "held_out"),
                        help="which phrasings of the instruction to record (default train)")
    parser.add_argument("--switch", type=float, default=0.0, metavar="FRACTION",
                        help="share of the episodes (0-1, drawn per seed) in which the instruction changes to another "
                             "cube partway there and the expert turns to it (reach; default 0)")
    parser.add_argument("--near-miss", type=float, default=0.0, metavar="FRACTION",
                        help="share of the episodes (0-1, drawn per seed) that start with the arm at rest low over "
                             "the table 4-12 cm beside the named cube (reach, pick, pick_place, stack; default 0)")
    parser.add_argument("--takeover", metavar="CHECKPOINT",
                        help="DAgger: the built-in model from this checkpoint (a directory or a shipped name) drives "
                             "each episode until it strays, stalls or nears the cube, then the expert takes over; only "
                             "the expert's part is recorded (pick, pick_place, stack)")
    parser.add_argument("--drive-seconds", type=float, default=8.0,
                        help="with --takeover: sim seconds the model may drive before the expert takes over "
                             "(default 8)")
    parser.add_argument("--own-grasp", type=float, default=0.0, metavar="FRACTION",
                        help="with --takeover: share of the episodes (0-1, drawn per seed) in which the model grasps "
                             "and carries itself, and the expert takes over where that goes wrong: a missed grasp, "
                             "the cube let go away from where it goes (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vla_ros.data.bag import BagError
    from vla_ros.data.collect import Collector
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.sim.tasks import TASKS
    from vla_ros.terminal import console as make_console

    if args.episodes < 1:
        raise VlaRosError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0.0 <= args.switch <= 1.0:
        raise VlaRosError(f"--switch is a fraction of the episodes, 0 to 1, got {args.switch}")
    if not 0.0 <= args.near_miss <= 1.0:
        raise VlaRosError(f"--near-miss is a fraction of the episodes, 0 to 1, got {args.near_miss}")
    if not 0.0 <= args.own_grasp <= 1.0:
        raise VlaRosError(f"--own-grasp is a fraction of the episodes, 0 to 1, got {args.own_grasp}")
    if args.own_grasp and not args.takeover:
        raise VlaRosError("--own-grasp needs --takeover CHECKPOINT: a model to grasp")
    for spec in args.task:
        if spec.split(":")[0] not in TASKS:
            raise VlaRosError(f"no task {spec.split(':')[0]!r}; tasks: {', '.join(TASKS)}")
    embodiment = load_embodiment(args.embodiment)
    console = make_console()
    takeover = None
    if args.takeover:
        from vla_ros.policy.builtin import BuiltinPolicy
        from vla_ros.policy.driven import PolicyChunks
        from vla_ros.sim.takeover import TAKEOVER_TASKS

        for spec in args.task:
            if spec.split(":")[0] not in TAKEOVER_TASKS:
                raise VlaRosError(f"--takeover: task {spec!r} has no takeover (only {', '.join(TAKEOVER_TASKS)})")
        takeover = PolicyChunks(BuiltinPolicy(embodiment, args.takeover), embodiment)
    args.out.mkdir(parents=True, exist_ok=True)
    collector = Collector(embodiment, takeover, args.drive_seconds, args.own_grasp)
    summary = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    try:
        with Progress(*columns, console=console) as progress:
            for spec in args.task:
                bar = progress.add_task(f"{embodiment.name} {spec}", total=args.episodes, status="")
                successes, handovers = 0, {}
                for index in range(args.episodes):
                    seed = args.seed + index
                    try:
                        recorded = collector.record(spec, seed, args.out, args.phrasing, args.seconds, args.linger,
                                                    args.switch, args.near_miss)
                    except BagError as error:
                        raise VlaRosError(f"{error} (remove it, or collect with another --seed)") from None
                    successes += recorded.result.success
                    if recorded.handover is not None:
                        reason = recorded.handover.reason
                        handovers[reason] = handovers.get(reason, 0) + 1
                    progress.update(bar, advance=1, status=f"{successes}/{index + 1} succeeded")
                summary[spec] = {"episodes": args.episodes, "successes": successes}
                if handovers:
                    summary[spec]["handovers"] = handovers
    finally:
        collector.close()
    for spec, counts in summary.items():
        console.print(f"{embodiment.name} {spec}: {counts['successes']}/{counts['episodes']} expert episodes succeeded")
        if "handovers" in counts:
            console.print("  the model handed over: " + ", ".join(f"{reason} {n}" for reason, n in
                                                                  sorted(counts["handovers"].items())))
    console.print(f"wrote {sum(c['episodes'] for c in summary.values())} bags to {args.out} "
                  "(training uses the successful ones)")
    (args.out / f"collect-{embodiment.name}-s{args.seed}.json").write_text(json.dumps(
        {"embodiment": embodiment.name, "seed": args.seed, "phrasing": args.phrasing, "switch": args.switch,
         "near_miss": args.near_miss, "takeover": args.takeover, "own_grasp": args.own_grasp, "tasks": summary},
        indent=2))
    return 0
