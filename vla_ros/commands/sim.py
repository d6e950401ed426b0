"""`vla-ros sim EMBODIMENT`: the simulator with the scripted expert in the loop, through ROS topics.

Starts sim_node and the expert node as separate processes talking over DDS, runs seeded episodes
of a task through the sim's ~/reset service, and reports success per episode; optionally saves
what a camera saw as a video (.mp4) or a contact sheet (.png).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def register(verbs) -> None:
    parser = verbs.add_parser("sim", help="run the simulator with the scripted expert in the loop and report success")
    parser.add_argument("embodiment", help="embodiment name (arm7, ...) or file")
    parser.add_argument("--task", default="reach",
                        help="task spec: reach, reach:red, push:blue:left, ... (default reach)")
    parser.add_argument("--episodes", type=int, default=1, help="number of seeded episodes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; the next ones count up")
    parser.add_argument("--seconds", type=float, default=10.0, help="sim time limit per episode (default 10)")
    parser.add_argument("--video", type=Path, help="save a camera's view: .mp4 video or .png contact sheet")
    parser.add_argument("--camera", help="camera for --video (default: the embodiment's first)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--real-time-factor", type=float, default=1.0, help="sim speed (default 1.0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vla_ros.bringup import NodeSpec
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.media import save_frames
    from vla_ros.process import ProcessGroup
    from vla_ros.ros.sim_client import SimClient
    from vla_ros.sim.tasks import TASKS
    from vla_ros.terminal import console as make_console

    embodiment = load_embodiment(args.embodiment)
    if args.task.split(":")[0] not in TASKS:
        raise VlaRosError(f"no task {args.task.split(':')[0]!r}; tasks: {', '.join(TASKS)}")
    camera = None
    if args.video:
        camera = embodiment.cameras.get(args.camera) if args.camera else next(iter(embodiment.cameras.values()), None)
        if camera is None:
            raise VlaRosError(f"no camera {args.camera!r}; cameras: {', '.join(embodiment.cameras) or 'none'}")
    console = make_console()
    log_dir = Path(tempfile.mkdtemp(prefix="vla_ros-sim-"))
    robot = {"embodiment": str(embodiment.path)}
    nodes = [NodeSpec("sim_node", "sim_node", "", {**robot, "task": args.task, "seed": args.seed,
                                                   "real_time_factor": args.real_time_factor,
                                                   "publish_cameras": camera is not None}),
             NodeSpec("expert_node", "expert_node", "", robot)]
    outcomes, frames, labels = [], [], []
    with ProcessGroup(log_dir) as graph:
        for node in nodes:
            graph.start(node.name, node.argv())
        client = SimClient(camera_topic=camera.topic if camera else None)
        try:
            client.spin_until(lambda: _alive(graph) and client.status is not None, 60, "the sim node")
            commanded = [g.command_topic for g in embodiment.commanded_groups]
            client.wait_ready(60, commanded[0] if commanded else embodiment.base.command_topic)
            for episode in range(args.episodes):
                graph.check()
                outcome = client.run_episode(args.task, args.seed + episode, args.seconds,
                                             frame_every_s=0.25 if camera else 0.0)
                outcomes.append(outcome)
                for time_s, frame in client.take_frames(len(client.frames)):
                    frames.append(frame)
                    labels.append(f"{outcome.task} s{outcome.seed} t={time_s:.1f}")
                console.print(f"episode {episode + 1}/{args.episodes} seed {outcome.seed} {outcome.task}: "
                              f"{'[green]success[/]' if outcome.success else '[red]failure[/]'} after "
                              f"{outcome.seconds:.2f} s ({outcome.detail})")
        finally:
            client.close()
    successes = sum(o.success for o in outcomes)
    console.print(f"{embodiment.name} {args.task}: {successes}/{len(outcomes)} episodes succeeded "
                  f"(logs in {log_dir})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "embodiment": embodiment.name, "task": args.task, "episodes": len(outcomes),
            "successes": successes, "success_rate": successes / max(len(outcomes), 1),
            "results": [o.__dict__ for o in outcomes],
        }, indent=2))
    if camera is not None and frames:
        save_frames(args.video, frames, fps=4.0, labels=labels)
        console.print(f"wrote {args.video} ({len(frames)} frames of camera {camera.name})")
    return 0


def _alive(graph) -> bool:
    graph.check()
    return True
