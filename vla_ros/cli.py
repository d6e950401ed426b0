"""The `vla-ros` command: one verb per job, each in vla_ros.commands."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from vla_ros import __version__
from vla_ros.errors import VlaRosError

VERBS = ("doctor", "demo", "embodiment", "sim", "up", "serve", "bench", "collect", "export", "train", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-ros", description="Vision-Language-Action policies in charge of ROS 2 robots."
    )
    parser.add_argument("--version", action="version", version=f"vla_ros {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        importlib.import_module(f"vla_ros.commands.{verb}").register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; user mistakes (VlaRosError) print a message and exit 2, never a traceback.

    SIGTERM stops a verb as Ctrl-C does, so the nodes it started are stopped on the way out.
    """
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.handler(args)
    except VlaRosError as error:
        print(f"vla-ros {args.verb}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
