"""`vla-ros up EMBODIMENT [--sim] [--teleop joy|leader]`: the graph `ros2 launch vla_ros ...` starts.

Without ROS's launch tooling: each node a child process, its output line by line behind its name.

Ctrl-C (or SIGTERM) stops every node and exits 0; a node that exits on its own stops the rest,
and `up` exits 1 saying which node it was and with what status.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

POLL_S = 0.1


def register(verbs) -> None:
    parser = verbs.add_parser("up", help="start the node graph (as ros2 launch vla_ros sim/bringup.launch.py would)")
    parser.add_argument("embodiment",
                        help="embodiment name (arm7, mobile_manipulator, humanoid_upper, ur5e) or config file")
    parser.add_argument("--sim", action="store_true", help="start sim_node too: the robot in the embedded MuJoCo sim")
    parser.add_argument("--policy", default="builtin", help="policy backend: builtin, hold, replay, remote, lerobot "
                                                            "(default builtin)")
    parser.add_argument("--checkpoint", default="", help="checkpoint of the builtin backend (default: the shipped one)")
    parser.add_argument("--policy-param", action="append", default=[], metavar="KEY=VALUE",
                        help="backend parameter, e.g. url=ws://host:8000 (repeatable)")
    parser.add_argument("--namespace", default="", help="namespace for every node and topic (default none)")
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument("--use-sim-time", action="store_true",
                       help="every node follows /clock (the default with --sim, as sim.launch.py)")
    clock.add_argument("--wall-clock", action="store_true",
                       help="with --sim: every node, sim_node too, runs on the wall clock instead of /clock")
    parser.add_argument("--lockstep", action="store_true",
                        help="with --sim, on sim time: the sim steps only once the controller has commanded and "
                             "waits at each observation for policy_node (evaluation)")
    parser.add_argument("--record", nargs="?", const="episodes", default="", metavar="DIR",
                        help="start recorder_node too, its bags into DIR (default episodes/)")
    parser.add_argument("--teleop", default="", metavar="joy|leader",
                        help="start teleop_node too: a person takes over with a gamepad (joy) or a leader arm")
    parser.add_argument("--task", default="reach", help="the sim's task spec (with --sim; default reach)")
    parser.add_argument("--seed", type=int, default=0, help="the sim's scene seed (with --sim; default 0)")
    parser.add_argument("--print-graph", action="store_true", help="print each node's command line and exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vla_ros.bringup import Options, graph
    from vla_ros.policy import parse_params

    options = Options(embodiment=args.embodiment, sim=args.sim, policy=args.policy, checkpoint=args.checkpoint,
                      policy_params=parse_params(pairs=args.policy_param), namespace=args.namespace,
                      use_sim_time=args.use_sim_time or (args.sim and not args.wall_clock),
                      record=bool(args.record), record_dir=args.record, teleop=args.teleop, task=args.task,
                      seed=args.seed, lockstep=args.lockstep)
    nodes = graph(options)
    if args.print_graph:
        for node in nodes:
            print(" ".join(node.argv()))
        return 0
    return Graph([(node.name, node.argv()) for node in nodes]).run()


class Graph:
    """The nodes as named child processes whose output is echoed behind their names."""

    def __init__(self, commands: list[tuple[str, list[str]]], out=None):
        self.commands = commands
        self.out = out or sys.stdout
        self.width = max(len(name) for name, _ in commands)
        self.lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self.lock:
            self.out.write(f"[{name.ljust(self.width)}] {line}\n")
            self.out.flush()

    def run(self) -> int:
        """Start everything; block until Ctrl-C/SIGTERM (0) or a node's own exit (1)."""
        from vla_ros.process import ChildDied, ProcessGroup

        with ProcessGroup(echo=self.say) as nodes:
            try:
                for name, argv in self.commands:
                    nodes.start(name, argv)
                self.say("up", f"started {', '.join(f'{n} (pid {c.pid})' for n, c in nodes.children.items())}; "
                               "Ctrl-C stops them all")
                while True:
                    nodes.check()
                    time.sleep(POLL_S)
            except ChildDied as died:
                nodes.stop_all()
                self.say("up", f"{died.name} exited with status {died.returncode}{_signal_name(died.returncode)}: "
                               "stopped the other nodes (its last lines are above)")
                return 1
            except KeyboardInterrupt:
                self.say("up", "stopping every node")
                codes = nodes.stop_all()
                self.say("up", "stopped (" + ", ".join(f"{n} {c}" for n, c in codes.items()) + ")")
                return 0


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            return ""
    return ""

