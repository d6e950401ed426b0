"""`vla-ros export lerobot`: episode bags as a LeRobotDataset v3.0 (vla_ros.data.lerobot)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(verbs) -> None:
    parser = verbs.add_parser("export", help="write episode bags in another format (lerobot: LeRobotDataset v3.0)")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    summary = "episode bags as a LeRobotDataset v3.0 (parquet + one MP4 stream per camera)"
    lerobot = formats.add_parser("lerobot", help=summary, description=summary)
    lerobot.add_argument("episodes", type=Path, nargs="+", metavar="EPISODES",
                         help="bags, or directories with bags in or under them (one embodiment)")
    lerobot.add_argument("--out", type=Path, required=True, help="dataset directory to create (new or empty)")
    lerobot.add_argument("--fps", type=float,
                         help="frames per second (default: the fastest camera's rate)")
    lerobot.add_argument("--repo-id", default="", help="the dataset's name on the hub (default local/<out name>)")
    lerobot.add_argument("--embodiment", help="embodiment name or file (default: the one the bags were recorded on)")
    lerobot.add_argument("--max-image-age", type=float, metavar="S",
                         help="drop a frame whose newest image is older than this (default 1.5 camera periods of "
                              "the slowest camera)")
    lerobot.add_argument("--vcodec", default="libsvtav1", choices=("libsvtav1", "h264"),
                         help="video codec (default libsvtav1, LeRobot's AV1)")
    lerobot.add_argument("--image-size", type=int, metavar="N",
                         help="resize every camera to N x N (default: the cameras' own size)")
    lerobot.add_argument("--include-failures", action="store_true", help="export failed episodes too")
    lerobot.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from vla_ros.data.bag import find_bags, read_info
    from vla_ros.data.lerobot import dropped_totals, export_lerobot
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.terminal import console as make_console

    console = make_console()
    bags = find_bags(args.episodes)
    infos = {bag: read_info(bag) for bag in bags}
    failed = [bag for bag, info in infos.items() if info.get("outcome.success") != "true"]
    if not args.include_failures:
        bags = [bag for bag in bags if bag not in failed]
    if not bags:
        raise VlaRosError(f"no successful episodes in {', '.join(map(str, args.episodes))} "
                          f"({len(failed)} failed or unfinished: --include-failures exports them)")
    recorded = sorted({infos[bag].get("embodiment", "?") for bag in bags})
    if args.embodiment is None and len(recorded) != 1:
        raise VlaRosError(f"the bags are of {', '.join(recorded)}: a dataset holds one embodiment; export each "
                          f"on its own, or name it with --embodiment")
    embodiment = load_embodiment(args.embodiment or recorded[0])
    rates = [camera.rate_hz for camera in embodiment.cameras.values()]
    if not rates:
        raise VlaRosError(f"{embodiment.name} has no cameras: a LeRobot dataset of a VLA needs images")
    fps = args.fps or max(rates)
    max_age = args.max_image_age if args.max_image_age is not None else 1.5 / min(rates)
    columns = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("export", total=len(bags))
        done = export_lerobot(bags, args.out, embodiment, fps, args.repo_id or f"local/{args.out.name}", max_age,
                              args.vcodec, (args.image_size, args.image_size) if args.image_size else None,
                              lambda exported: progress.update(bar, advance=1))
    table = Table(title=f"{args.out}: LeRobotDataset v3.0, {embodiment.name}, {fps:g} fps")
    for column in ("episode", "frames", "dropped: stale image", "dropped: no instruction", "success"):
        table.add_column(column, justify="left" if column == "episode" else "right")
    for exported in done:
        table.add_row(exported.source, str(exported.frames), str(exported.dropped["stale image"]),
                      str(exported.dropped["no instruction"]), "?" if exported.success is None else
                      ("yes" if exported.success else "no"))
    dropped = dropped_totals(done)
    table.add_row("total", str(sum(e.frames for e in done)), str(dropped["stale image"]),
                  str(dropped["no instruction"]),
                  f"{sum(bool(e.success) for e in done)}/{len(done)}", style="bold")
    console.print(table)
    if failed and not args.include_failures:
        console.print(f"{len(failed)} failed or unfinished episodes left out (--include-failures exports them)")
    return 0
