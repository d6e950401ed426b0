"""`vla-ros demo`: the built-in VLA in charge of a simulated arm, one instruction after another.

Brings up the graph of `vla-ros up arm7 --sim` (sim_node, controller_node, policy_node with the
shipped checkpoint) as child processes, resets the scene for each episode, gives the instruction,
shows the episode's progress live, and reports success per instruction. Writes into --out a
contact sheet of what the camera saw, a tracking plot (the measured joints against the targets of
every action chunk) and the results as JSON. Exits 0 when the demo ran, whatever the successes:
they are the result, not an error; a node that dies or never comes up is one (exit 1).
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

DEFAULT_INSTRUCTIONS = ("reach the red cube", "put the green cube in the tray", "now go to the blue block",
                        "lift the blue cube")
SHEET_FRAMES = 5  # per episode
REACH_SECONDS = 8.0  # default time limits per episode [s] ...
MANIPULATION_SECONDS = 15.0  # ... for a task that grasps
TRACKED_JOINTS = 3  # of the first commanded group, in the tracking plot


def register(verbs) -> None:
    parser = verbs.add_parser("demo", help="the built-in VLA drives the simulated arm through a few instructions")
    parser.add_argument("--embodiment", default="arm7", help="embodiment name or file (default arm7)")
    parser.add_argument("--instruction", action="append", default=[], metavar="TEXT",
                        help="an instruction naming a cube colour, and the tray or a second cube to put it on "
                             "(repeatable; default: "
                             + "; ".join(f"'{i}'" for i in DEFAULT_INSTRUCTIONS) + ")")
    parser.add_argument("--episodes", type=int, default=1, help="episodes (scenes) per instruction (default 1)")
    parser.add_argument("--seed", type=int, default=1100, help="scene seed of the first episode (default 1100)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="sim time limit per episode (default: 8 for reaching, 15 for picking, placing and "
                             "stacking)")
    parser.add_argument("--policy", default="builtin", help="policy backend (default builtin)")
    parser.add_argument("--checkpoint", default="", help="checkpoint of the builtin backend (default: the shipped one)")
    parser.add_argument("--use-sim-time", action="store_true",
                        help="every node follows the sim's /clock (default: the wall clock, as vla-ros up)")
    parser.add_argument("--out", type=Path, default=Path("demo"),
                        help="where the pictures and results go (default demo/)")
    parser.set_defaults(handler=run)


PICK_WORDS = r"\b(pick|lift|raise|grab|grasp|hold|take)\b"  # a one-cube instruction with these is a pick
STACK_WORDS = r"\b(on|onto|stack|pile|top)\b"  # a two-cube one with these is a stack


def task_of(instruction: str, colours) -> str:
    """The task an instruction names, to judge its episode by; VlaRosError when it names no cube.

    A receptacle (the tray) and one cube: pick_place; two cubes and a word for stacking: stack,
    the first named on the second; one cube: pick with a word for lifting it, else reach.
    """
    from vla_ros.errors import VlaRosError
    from vla_ros.sim.tasks import RECEPTACLES

    words = instruction.lower()
    named = sorted((match.start(), c) for c in colours for match in re.finditer(rf"\b{c}\b", words))
    cubes = [c for _, c in named]
    receptacles = [r for r in RECEPTACLES if re.search(rf"\b{r}\b", words)]
    if receptacles and len(cubes) == 1:
        return f"pick_place:{cubes[0]}:{receptacles[0]}"
    if len(cubes) == 2 and cubes[0] != cubes[1] and not receptacles and re.search(STACK_WORDS, words):
        return f"stack:{cubes[0]}:{cubes[1]}"
    if len(cubes) == 1:
        return f"{'pick' if re.search(PICK_WORDS, words) else 'reach'}:{cubes[0]}"
    raise VlaRosError(f"instruction {instruction!r} names {len(cubes) or 'no'} cube colours"
                      f"{' and a ' + receptacles[0] if receptacles else ''}; the demo judges an episode by the cube "
                      f"it names ({', '.join(colours)}), with a receptacle ({', '.join(RECEPTACLES)}) or a cube to "
                      "put it on")


def time_limit(task: str) -> float:
    """The default time limit [s] of a demo episode of `task` (a spec from task_of)."""
    from vla_ros.sim.tasks import TASKS, Manipulation

    return MANIPULATION_SECONDS if issubclass(TASKS[task.split(":")[0]], Manipulation) else REACH_SECONDS


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from vla_ros import bringup
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.media import write_image
    from vla_ros.process import ChildDied
    from vla_ros.rollout import Rollout, contact_sheet
    from vla_ros.ros.qos import RELIABLE
    from vla_ros.ros.sim_client import SimUnavailable
    from vla_ros.ros.time import to_seconds
    from vla_ros.ros.trajectory import duration_seconds
    from vla_ros.sim.world import COLOURS
    from vla_ros.terminal import console as make_console

    console = make_console()
    robot = load_embodiment(args.embodiment)
    instructions = args.instruction or list(DEFAULT_INSTRUCTIONS)
    tasks = [task_of(text, COLOURS) for text in instructions]
    if args.episodes < 1 or not (args.seconds is None or args.seconds > 0):
        raise VlaRosError(f"need at least one episode of some seconds, got --episodes {args.episodes} "
                          f"--seconds {args.seconds}")
    camera = next(iter(robot.cameras), None)
    tracked = list(robot.commanded_groups[0].joints[:TRACKED_JOINTS])
    options = bringup.Options(str(robot.path), policy=args.policy, checkpoint=args.checkpoint,
                              use_sim_time=args.use_sim_time, task=tasks[0], seed=args.seed)
    measured: list[tuple[float, list[float]]] = []
    chunks: list[tuple[float, np.ndarray, np.ndarray]] = []
    episodes, results, marks = [], [], []
    log_dir = Path(tempfile.mkdtemp(prefix="vla_ros-demo-"))

    def on_state(msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if all(j in index for j in tracked):
            measured.append((to_seconds(msg.header.stamp), [msg.position[index[j]] for j in tracked]))

    def on_chunk(msg: JointTrajectory) -> None:
        columns = [list(msg.joint_names).index(j) for j in tracked if j in msg.joint_names]
        if len(columns) == len(tracked):
            times = np.array([duration_seconds(p.time_from_start) for p in msg.points])
            chunks.append((to_seconds(msg.header.stamp), times,
                           np.array([[p.positions[c] for c in columns] for p in msg.points])))

    try:
        with Rollout(robot, options, camera, log_dir) as rollout:
            console.print(f"[bold]vla-ros demo[/]: {robot.name} in the simulator, policy {args.policy}; started "
                          f"{', '.join(rollout.nodes)} (logs in {log_dir})")
            rollout.client.node.create_subscription(JointState, "joint_states", on_state, 50)
            rollout.client.node.create_subscription(JointTrajectory, "vla/action_chunk", on_chunk, RELIABLE)
            with console.status("waiting for policy_node (it loads the model) and the sim"):
                ready = rollout.wait_ready()
            if ready["level"] != 0:
                raise SimUnavailable(f"policy_node is not publishing chunks: {ready['message']}")
            console.print(f"policy_node ready: {ready['message']}")
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
            with Progress(*columns, console=console) as progress:
                for instruction, task in zip(instructions, tasks):
                    for _ in range(args.episodes):
                        seed = args.seed + len(episodes)
                        bar = progress.add_task(f"{len(episodes) + 1}. {instruction!r} (seed {seed})", total=1.0,
                                                detail="")

                        def show(status, bar=bar) -> None:
                            progress.update(bar, completed=status.progress, detail=status.detail)

                        marks.append((measured[-1][0] if measured else 0.0, f"{len(episodes) + 1}"))
                        report = rollout.episode(task, seed, args.seconds or time_limit(task), SHEET_FRAMES,
                                                 instruction, show)
                        outcome = report.outcome
                        episodes.append(report)
                        progress.update(bar, completed=1.0 if outcome.success else outcome.progress,
                                        detail=("[green]success[/]" if outcome.success else "[red]not reached[/]")
                                        + f" after {outcome.seconds:.1f} s: {outcome.detail}")
                        results.append({"instruction": instruction, "task": task, "seed": seed,
                                        "success": outcome.success, "seconds": round(outcome.seconds, 2),
                                        "detail": outcome.detail})
    except (SimUnavailable, ChildDied) as error:
        console.print(f"[red]the demo could not run[/]: {error}\n(node logs in {log_dir})")
        return 1

    table = Table(title=f"{robot.name}: the built-in VLA, one instruction at a time")
    for column in ("instruction", "successes", "episodes"):
        table.add_column(column)
    for instruction in instructions:
        mine = [r for r in results if r["instruction"] == instruction]
        table.add_row(instruction, str(sum(r["success"] for r in mine)), str(len(mine)))
    console.print(table)
    successes = sum(r["success"] for r in results)
    console.print(f"{successes}/{len(results)} episodes did what they were told")
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "demo.json"]
    (args.out / "demo.json").write_text(json.dumps({"embodiment": robot.name, "policy": args.policy,
                                                    "episodes": results, "successes": successes}, indent=2))
    sheet = contact_sheet(episodes, SHEET_FRAMES)
    if sheet is not None:
        write_image(args.out / "demo_sheet.png", sheet)
        written.append(args.out / "demo_sheet.png")
    if measured and chunks:
        tracking_plot(args.out / "demo_tracking.png", measured, chunks, tracked, marks)
        written.append(args.out / "demo_tracking.png")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0


def tracking_plot(path: Path, measured, chunks, joints: list[str], marks) -> None:
    """Each tracked joint over the demo: measured (black) and every action chunk's targets (colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    origin = measured[0][0]
    times = np.array([t for t, _ in measured]) - origin
    positions = np.array([p for _, p in measured])
    figure, axes = plt.subplots(len(joints), 1, figsize=(10, 2.2 * len(joints)), sharex=True, squeeze=False)
    for k, (axis, joint) in enumerate(zip(axes[:, 0], joints)):
        for stamp, offsets, targets in chunks:
            axis.plot(stamp - origin + offsets, targets[:, k], color="tab:orange", alpha=0.35, linewidth=0.8)
        axis.plot(times, positions[:, k], color="black", linewidth=1.2)
        for start, label in marks:
            axis.axvline(start - origin, color="grey", linestyle=":", linewidth=0.8)
            if k == 0:
                axis.annotate(f"episode {label}", (start - origin, 1.0), xycoords=("data", "axes fraction"),
                              fontsize=8, va="bottom")
        axis.set_ylabel(f"{joint} [rad]")
    axes[0, 0].plot([], [], color="black", label="measured")
    axes[0, 0].plot([], [], color="tab:orange", label="action chunk targets")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time [s]")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
