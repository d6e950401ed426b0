"""The README's parameter tables, written from the nodes' parameter dataclasses (described once).

    python -m vla_ros.nodes.parameters README.md           rewrite the tables in place
    python -m vla_ros.nodes.parameters --check README.md   exit 1, naming them, when they differ

A table sits between `<!-- parameters: NAME -->` and `<!-- end parameters -->`; NAME is a node's
executable, or `every node` for what all of them take.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vla_ros.nodes.base import NodeParams, RobotParams
from vla_ros.nodes.chunk_source_node import ChunkSourceParams
from vla_ros.nodes.controller_node import ControllerParams
from vla_ros.nodes.operator_node import OperatorParams
from vla_ros.nodes.policy_node import PolicyParams
from vla_ros.nodes.policy_server import ServerParams
from vla_ros.nodes.recorder_node import RecorderParams
from vla_ros.nodes.sim_node import SimParams
from vla_ros.nodes.teleop_node import TeleopParams
from vla_ros.params import Params, markdown_table

TABLES: dict[str, type[Params]] = {
    "every node": NodeParams,
    "policy_node": PolicyParams,
    "controller_node": ControllerParams,
    "sim_node": SimParams,
    "recorder_node": RecorderParams,
    "policy_server": ServerParams,
    "teleop_node": TeleopParams,
    "expert_node": RobotParams,
    "chunk_source_node": ChunkSourceParams,
    "operator_node": OperatorParams,
}
BLOCK = re.compile(r"(<!-- parameters: (?P<name>[^>]+?) -->\n)(?P<table>.*?)(<!-- end parameters -->)", re.DOTALL)


def table(name: str) -> str:
    """The markdown table of node `name` (the common parameters left out of each node's own)."""
    cls = TABLES[name]
    return markdown_table(cls, skip=None if cls is NodeParams else NodeParams) + "\n"


def render(text: str) -> str:
    """`text` with every parameter block holding its generated table (KeyError for an unknown name)."""
    return BLOCK.sub(lambda m: m.group(1) + table(m.group("name")) + m.group(4), text)


def stale(text: str) -> list[str]:
    """The names of the blocks whose table differs from the generated one."""
    return [m.group("name") for m in BLOCK.finditer(text) if m.group("table") != table(m.group("name"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the markdown file holding the tables (README.md)")
    parser.add_argument("--check", action="store_true", help="only say which tables differ (exit 1 if any)")
    args = parser.parse_args(argv)
    text = args.file.read_text()
    if args.check:
        differing = stale(text)
        if differing:
            print(f"{args.file}: parameter tables differ from the nodes' parameters: {', '.join(differing)}; "
                  f"run python -m vla_ros.nodes.parameters {args.file}", file=sys.stderr)
        return 1 if differing else 0
    args.file.write_text(render(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
