"""`vla-ros bench NAME`: run a benchmark from bench/ (shipped in share/vla_ros/bench)."""
from __future__ import annotations

import argparse
import runpy
import sys

from vla_ros import resources
from vla_ros.errors import VlaRosError, did_you_mean


def register(verbs) -> None:
    parser = verbs.add_parser("bench", help="run a benchmark (sim, ...) that prints and writes JSON")
    parser.add_argument("name", help="the benchmark: a file bench/<name>.py")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (see NAME --help)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    folder = resources.share_dir() / "bench"
    available = sorted(p.stem for p in folder.glob("*.py"))
    if args.name not in available:
        raise VlaRosError(f"no benchmark {args.name!r}{did_you_mean(args.name, available)}; "
                          f"benchmarks: {', '.join(available)}")
    sys.argv = [f"vla-ros bench {args.name}", *args.options]
    runpy.run_path(str(folder / f"{args.name}.py"), run_name="__main__")
    return 0
