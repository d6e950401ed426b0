"""Benchmark of policy_node: its own overhead per chunk, chunk rate, end-to-end delay; image conversion costs.

policy_node (`--embodiment`, default arm7; `hold` backend: no model time) runs as its own process
over DDS on loopback. This process is the robot: the body's cameras (224x224 rgb8, textured so
that they are not trivially compressible) at 30 Hz, joint_states of every movable joint at 500 Hz
and, for a body with a mobile base, odom (standing still) at 50 Hz, published from one thread
paced by absolute deadlines, each message stamped with the wall clock as it goes
out. The node asks for a chunk at `request_rate_hz` (default 30: one request per camera frame).

The node's overhead (observation ready to chunk published, minus model time) is its own
measurement: `overhead_p50_ms`/`overhead_p99_ms` of its last 200 requests, from the last
diagnostics of the measured span (the warm-up before it is discarded). From outside: chunks
received per second, and the end-to-end delay from a chunk's header.stamp (the observation time:
its camera frames' stamp) to its arrival here; that delay includes the frame's wait for the next
request, up to one request period. The machine's CPU steal over the span is reported beside them:
on a VM, time the host gives other guests stalls threads for milliseconds and sets the p99s.
Image conversions (vla_ros.ros.image, resize) are timed in-process, no DDS, at 224x224 and 640x480.

With `--backend builtin` the node runs the built-in VLA (`--checkpoint`, default the shipped
one) and the report adds its chunk inference p50/p95 (the node's own measurement), the
chunk length and the denoising steps. Then, in-process, the real-time-chunking seam: `--seams`
expert episodes are recorded in the simulator (held-out phrasings), and along each one the
model is asked for a chunk every `SEAM_PERIOD_S`, each time with the running chunk's actions for
the next `SEAM_DELAY_S` as the prefix, once with guidance and once without (same observations,
same noise). The seam is the largest joint difference between the new chunk and the running one
at the moment the new one takes over.
Run with `vla-ros bench policy [--backend hold|builtin] [--seconds N] [--request-rate HZ] [--json OUT] [--png OUT]`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rich.markup import escape
from rich.table import Table
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory

from vla_ros.control.rate import PreciseRate, set_timer_slack
from vla_ros.embodiment import Embodiment, EmbodimentIO, load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.media import resize
from vla_ros.process import ProcessGroup
from vla_ros.ros.diagnostics import TOPIC, node_name, status_values
from vla_ros.ros.image import from_compressed_msg, from_image_msg, to_compressed_msg, to_image_msg
from vla_ros.ros.time import to_seconds
from vla_ros.terminal import console as make_console

CAMERA_RATE_HZ = 30.0
STATE_RATE_HZ = 500.0
ODOM_EVERY = 10  # joint_states periods per odom message: 50 Hz, a base driver's usual rate
RESOLUTIONS = {"224x224": (224, 224), "640x480": (480, 640)}  # label: (height, width)
OVERHEAD_BUDGET_MS = 1.0  # the goal for the node's own overhead p99
INSTRUCTION = "reach the red cube"
SEAM_PERIOD_S = 0.4  # a new chunk every 0.4 s: half of a 16 x 0.05 s chunk, the policy node's default fraction
SEAM_DELAY_S = 0.1  # the new chunk takes over this long after its observation (inference plus transport)


def textured_frames(height: int, width: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` (H, W, 3) uint8 frames: colour waves drifting from frame to frame under per-pixel noise.

    Neither jpeg nor a shared-memory shortcut gets them for free.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for k in range(count):
        phase = 2 * np.pi * k / count
        waves = np.stack([np.sin(x / 17 + phase), np.sin(y / 23 - phase), np.sin((x + y) / 31 + 2 * phase)], axis=-1)
        noisy = 128 + 90 * waves + rng.normal(0.0, 20.0, (height, width, 3))
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def time_us(function: Callable[[], object], iterations: int) -> dict:
    """p50/p99 [us] of `iterations` calls of `function` (after one untimed call)."""
    function()
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        function()
        times[i] = time.perf_counter() - start
    return {"p50_us": float(np.percentile(times, 50) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6)}


def image_conversions(iterations: int = 1000, resolutions: dict[str, tuple[int, int]] = RESOLUTIONS) -> dict:
    """Cost of each image step a camera frame can take through policy_node, per resolution.

    from_image_msg of rgb8 is a view of the message buffer; of bgr8 one contiguous converted copy.
    `resize_to_224x224` is free at 224x224 (no copy when the size fits). Jpeg at quality 90, as
    to_compressed_msg sends.

    Returns:
        {"iterations": n, "resolutions": {label: {operation: {"p50_us", "p99_us"}}}, "jpeg_bytes": {label: n}}
    """
    results, jpeg_bytes = {}, {}
    stamp = Time()
    for label, (height, width) in resolutions.items():
        rgb = textured_frames(height, width, 1)[0]
        rgb_msg = to_image_msg(rgb, stamp, "camera")
        bgr_msg = to_image_msg(np.ascontiguousarray(rgb[..., ::-1]), stamp, "camera")
        bgr_msg.encoding = "bgr8"
        jpeg_msg = to_compressed_msg(rgb, stamp, "camera", "jpeg")
        operations = {
            "from_image_msg_rgb8": lambda: from_image_msg(rgb_msg),
            "from_image_msg_bgr8": lambda: from_image_msg(bgr_msg),
            "to_image_msg": lambda: to_image_msg(rgb, stamp, "camera"),
            "resize_to_224x224": lambda: resize(rgb, 224, 224),
            "from_compressed_msg_jpeg": lambda: from_compressed_msg(jpeg_msg),
        }
        results[label] = {name: time_us(operation, iterations) for name, operation in operations.items()}
        jpeg_bytes[label] = len(jpeg_msg.data)
    return {"iterations": iterations, "resolutions": results, "jpeg_bytes": jpeg_bytes}


class Robot:
    """The bench's node: cameras and joint_states out (from a paced thread); chunks and diagnostics in."""

    def __init__(self, embodiment: Embodiment):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_policy_robot", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.joints = [joint.name for joint in embodiment.description.movable_joints]
        self.cameras = []
        for seed, camera in enumerate(embodiment.cameras.values()):
            frames = textured_frames(camera.height, camera.width, 30, seed)
            self.cameras.append((self.node.create_publisher(Image, camera.topic, qos_profile_sensor_data),
                                 [to_image_msg(frame, Time(), camera.frame) for frame in frames]))
        self.states = self.node.create_publisher(JointState, "joint_states", 10)
        self.odom = self.node.create_publisher(Odometry, "odom", 10) if EmbodimentIO(embodiment).base else None
        self.chunks: list[tuple[float, float]] = []  # (arrival, header.stamp) [s]
        self.diagnostics: list[tuple[float, dict[str, str]]] = []  # (arrival [s], values)
        self.lateness: list[float] = []  # [s] of each joint_states period
        self.node.create_subscription(JointTrajectory, "vla/action_chunk", self._on_chunk, 100)
        self.node.create_subscription(DiagnosticArray, TOPIC, self._on_diagnostics, 10)
        self.running = True
        self.thread = threading.Thread(target=self._publish, name="bench_robot", daemon=True)
        self.thread.start()

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _publish(self) -> None:
        """joint_states every period, odom every ODOM_EVERY, the cameras whenever a frame is due; all stamped now."""
        set_timer_slack()
        rate = PreciseRate(STATE_RATE_HZ)
        next_frame, frame, period = time.monotonic(), 0, 0
        phases = np.arange(len(self.joints), dtype=float)
        zeros = [0.0] * len(self.joints)
        while self.running:
            self.lateness.append(rate.sleep())
            now = self.node.get_clock().now()
            t = now.nanoseconds * 1e-9
            stamp = now.to_msg()
            # A slow wave (0.05 rad, 0.5 Hz): the hold policy echoes whatever state it is given.
            self.states.publish(JointState(header=Header(stamp=stamp), name=self.joints,
                                           position=(0.05 * np.sin(np.pi * t + phases)).tolist(),
                                           velocity=(0.05 * np.pi * np.cos(np.pi * t + phases)).tolist(), effort=zeros))
            if self.odom is not None and period % ODOM_EVERY == 0:
                self.odom.publish(Odometry(header=Header(stamp=stamp, frame_id="odom"), child_frame_id="base_link"))
            period += 1
            if time.monotonic() >= next_frame:
                next_frame += 1.0 / CAMERA_RATE_HZ
                for publisher, images in self.cameras:
                    image = images[frame % len(images)]
                    image.header.stamp = stamp
                    publisher.publish(image)
                frame += 1

    def _on_chunk(self, msg: JointTrajectory) -> None:
        self.chunks.append((self.now(), to_seconds(msg.header.stamp)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics += [(self.now(), status_values(s)) for s in msg.status if s.name == node_name("policy_node")]

    def spin_for(self, seconds: float, check: Callable[[], None], until: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            check()
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@dataclass(frozen=True)
class Mark:
    """One end of the measured span.

    This process's clock [s], joint_states periods sent so far, the node's CPU time [s], and the
    machine's CPU steal and total time [jiffies].
    """

    stamp: float
    periods: int
    node_cpu_s: float
    steal: int
    jiffies: int


def mark(robot: Robot, pid: int) -> Mark:
    """Now, for the span [start, end] (Linux /proc: the node's CPU time, the machine's steal)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return Mark(robot.now(), len(robot.lateness), (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
                cpu[7], sum(cpu[:8]))


def number(values: dict[str, str], key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return float("nan")


def summarise(robot: Robot, start: Mark, end: Mark) -> dict:
    """The node's last diagnostics in [start, end] and what arrived here in that span."""
    seconds = end.stamp - start.stamp
    delays_ms = np.array([arrival - stamp for arrival, stamp in robot.chunks
                          if start.stamp <= arrival <= end.stamp]) * 1e3
    reports = [values for arrival, values in robot.diagnostics if start.stamp <= arrival <= end.stamp]
    if not reports:
        raise VlaRosError("no policy_node diagnostics arrived while measuring")
    last = reports[-1]
    lateness_us = np.array(robot.lateness[start.periods:end.periods]) * 1e6
    delay = {"min": float(delays_ms.min()), "p50": float(np.percentile(delays_ms, 50)),
             "p99": float(np.percentile(delays_ms, 99)), "max": float(delays_ms.max())} if len(delays_ms) else None
    return {
        "overhead_ms": {"p50": number(last, "overhead_p50_ms"), "p99": number(last, "overhead_p99_ms"),
                        "p99_worst_report": max(number(r, "overhead_p99_ms") for r in reports)},
        "node_chunks_per_s": number(last, "chunks_per_s"),
        "node_inference_p50_ms": number(last, "inference_p50_ms"),
        "node_inference_p95_ms": number(last, "inference_p95_ms"),
        "node_observation_age_ms": number(last, "observation_age_ms"),
        "node_message": last["message"],
        "node_cpu_percent": 100 * (end.node_cpu_s - start.node_cpu_s) / seconds,
        "cpu_steal_percent": 100 * (end.steal - start.steal) / max(1, end.jiffies - start.jiffies),
        "chunks_received": int(len(delays_ms)),
        "chunks_per_s": len(delays_ms) / seconds,
        "end_to_end_delay_ms": delay,
        "delays_ms": [round(float(d), 3) for d in delays_ms],
        "joint_states_rate_hz": len(lateness_us) / seconds,
        "joint_states_lateness_us": {"p50": float(np.percentile(lateness_us, 50)),
                                     "p99": float(np.percentile(lateness_us, 99))},
        "diagnostics": [{key: number(r, key) for key in ("overhead_p50_ms", "overhead_p99_ms", "chunks_per_s")}
                        for r in reports],
    }


def measure_seams(checkpoint: str, episodes: int, console, body: str = "arm7") -> dict:
    """The real-time-chunking seam [rad] with and without guidance, over recorded expert episodes."""
    from vla_ros.data.bag import read_episode
    from vla_ros.data.collect import collect
    from vla_ros.data.dataset import episode_samples
    from vla_ros.policy import Observation, make_policy
    from vla_ros.policy.schedule import ChunkSchedule

    embodiment = load_embodiment(body)
    policies = {name: make_policy("builtin", embodiment, {"checkpoint": checkpoint, "guidance": name == "guided"})
                for name in ("guided", "unguided")}
    horizon, dt = policies["guided"].model.config.horizon, policies["guided"].model.config.dt
    folder = Path(tempfile.mkdtemp(prefix="vla_ros-bench-seams-"))
    console.print(f"seams: recording {episodes} expert episodes (held-out phrasings) in {folder} ...")
    recorded = collect(embodiment, "reach", list(range(50_000, 50_000 + episodes)), folder, phrasing="held_out")
    seams = {name: [] for name in policies}
    for episode in recorded:
        samples = episode_samples(read_episode(episode.path), embodiment, horizon, dt, (224, 224))
        stamps = np.arange(len(samples)) * 0.1  # the cameras' 10 Hz
        every = int(round(SEAM_PERIOD_S / 0.1))
        for name, policy in policies.items():
            policy.reset()
            schedule = ChunkSchedule()
            for i in range(0, len(samples), every):
                observation = Observation({c: frames[i] for c, frames in samples.images.items()}, samples.states[i],
                                          samples.instructions[i], float(stamps[i]))
                prefix = schedule.prefix(observation.stamp, dt, observation.stamp + SEAM_DELAY_S)
                chunk = policy.infer(observation, prefix)
                if schedule.executing is not None:
                    switch = observation.stamp + SEAM_DELAY_S
                    seams[name].append(float(np.max(np.abs(_at(chunk, switch) - _at(schedule.executing, switch)))))
                schedule.answered(chunk, SEAM_DELAY_S)
    summary = {name: {"mean_rad": float(np.mean(v)), "p95_rad": float(np.percentile(v, 95)),
                      "max_rad": float(np.max(v)),
                      "seams": len(v)} for name, v in seams.items()}
    return {"episodes": episodes, "period_s": SEAM_PERIOD_S, "delay_s": SEAM_DELAY_S, **summary}


def _at(chunk, time_s: float) -> np.ndarray:
    """A chunk's actions linearly interpolated at `time_s` (held before its first point)."""
    times = chunk.stamp + chunk.times
    return np.array([np.interp(time_s, times, chunk.actions[:, j]) for j in range(chunk.actions.shape[1])])


def measure_node(seconds: float, warmup_s: float, request_rate_hz: float, console, backend: str = "hold",
                 checkpoint: str = "", body: str = "arm7") -> dict:
    """policy_node as a process, this process its robot: the summary of `seconds` after `warmup_s`."""
    embodiment = load_embodiment(body)
    env = {"ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(random.randint(1, 200))),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update(env)
    log_dir = Path(tempfile.mkdtemp(prefix="vla_ros-bench-policy-"))
    with ProcessGroup(log_dir, env) as graph:
        node = graph.start("policy_node", [sys.executable, "-m", "vla_ros.nodes.policy_node", "--ros-args",
                                           "-p", f"embodiment:={body}", "-p", f"policy:={backend}",
                                           *(["-p", f"checkpoint:={checkpoint}"] if checkpoint else []),
                                           "-p", f"instruction:={INSTRUCTION}",
                                           "-p", f"request_rate_hz:={float(request_rate_hz)}"])
        robot = Robot(embodiment)
        try:
            robot.spin_for(120.0, graph.check, until=lambda: bool(robot.chunks))
            if not robot.chunks:
                raise VlaRosError(f"policy_node sent no chunk in 120 s; its log ({log_dir}):\n"
                                  f"{graph.output('policy_node')}")
            console.print(f"first chunk; warming up {warmup_s:g} s, then measuring {seconds:g} s ...")
            robot.spin_for(warmup_s, graph.check)
            start = mark(robot, node.pid)
            robot.spin_for(seconds, graph.check)
            end = mark(robot, node.pid)
        finally:
            robot.close()
    return {**summarise(robot, start, end), "logs": str(log_dir)}


def print_report(console, report: dict) -> None:
    node = report["node"]
    table = Table(title=f"policy_node ({report['backend']}, request_rate_hz {report['request_rate_hz']:g}), "
                        f"{report['seconds']:g} s after {report['warmup_s']:g} s warm-up")
    for column in ("measure", "p50", "p99", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    overhead, delay, states = node["overhead_ms"], node["end_to_end_delay_ms"], node["joint_states_lateness_us"]
    verdict = "within" if report["overhead_within_budget"] else "OVER"
    rows = [
        ("node overhead [ms], its last 200 requests", f"{overhead['p50']:.3f}", f"{overhead['p99']:.3f}",
         f"{verdict} the {OVERHEAD_BUDGET_MS:g} ms budget; worst report p99 {overhead['p99_worst_report']:.3f}"),
        ("chunk delay, stamp to arrival here [ms]", f"{delay['p50']:.2f}", f"{delay['p99']:.2f}",
         f"min {delay['min']:.2f}, max {delay['max']:.2f} (includes the frame's wait for a request)")
        if delay else ("chunk delay, stamp to arrival here [ms]", "-", "-", "no chunks"),
        ("chunks/s received", f"{node['chunks_per_s']:.2f}", "", f"node reports {node['node_chunks_per_s']:.2f}"),
        ("node observation age [ms]", f"{node['node_observation_age_ms']:.1f}", "",
         f"inference p50 {node['node_inference_p50_ms']:.1f} ms"),
        ("node CPU [% of one core]", f"{node['node_cpu_percent']:.0f}", "",
         f"machine CPU steal {node['cpu_steal_percent']:.1f} %"),
        (f"joint_states period lateness [us] ({STATE_RATE_HZ:g} Hz)", f"{states['p50']:.0f}", f"{states['p99']:.0f}",
         f"sent at {node['joint_states_rate_hz']:.1f} Hz"),
    ]
    for row in rows:
        table.add_row(*map(escape, row))
    console.print(table)

    model = report.get("model")
    if model:
        console.print(f"builtin model {model['checkpoint']}: chunk {model['chunk_length']} x {model['dt']} s, "
                      f"{model['denoising_steps']} denoising steps; chunk inference in the node "
                      f"p50 {model['inference_ms']['p50']:.1f} ms, p95 {model['inference_ms']['p95']:.1f} ms")
        seams = model["seams"]
        if seams:
            table = Table(title=f"real-time chunking seam [rad], {seams['episodes']} episodes, a chunk every "
                                f"{seams['period_s']:g} s taking over {seams['delay_s']:g} s after its observation")
            for column in ("", "mean", "p95", "max", "seams"):
                table.add_column(column, justify="left" if not column else "right")
            for name in ("guided", "unguided"):
                row = seams[name]
                table.add_row(name, f"{row['mean_rad']:.4f}", f"{row['p95_rad']:.4f}", f"{row['max_rad']:.4f}",
                              str(row["seams"]))
            console.print(table)

    images = report["image_conversion"]
    table = Table(title=escape(f"image conversion [us], in-process, {images['iterations']} iterations"))
    table.add_column("operation")
    for label in images["resolutions"]:
        table.add_column(f"{label} p50", justify="right")
        table.add_column(f"{label} p99", justify="right")
    for operation in next(iter(images["resolutions"].values())):
        cells = []
        for result in images["resolutions"].values():
            cells += [f"{result[operation]['p50_us']:.1f}", f"{result[operation]['p99_us']:.1f}"]
        table.add_row(operation, *cells)
    console.print(table)


def plot(path: Path, node: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (delays, overheads) = plt.subplots(1, 2, figsize=(12, 4))
    delays.hist(node["delays_ms"], bins=50)
    delays.set_title("chunk end-to-end delay (observation stamp to arrival)")
    delays.set_xlabel("ms")
    delays.set_ylabel("chunks")
    reports = node["diagnostics"]
    seconds = np.arange(len(reports))
    overheads.plot(seconds, [r["overhead_p50_ms"] for r in reports], label="p50")
    overheads.plot(seconds, [r["overhead_p99_ms"] for r in reports], label="p99")
    overheads.axhline(OVERHEAD_BUDGET_MS, color="red", lw=0.8, ls="--", label="budget")
    overheads.set_title("policy_node overhead (last 200 requests), per diagnostics report")
    overheads.set_xlabel("report")
    overheads.set_ylabel("ms")
    overheads.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="vla-ros bench policy", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds measured after the warm-up (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds discarded after the first chunk (default 3)")
    parser.add_argument("--request-rate", type=float, default=CAMERA_RATE_HZ,
                        help=f"policy_node request_rate_hz (default {CAMERA_RATE_HZ:g}: one request per camera frame)")
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per image conversion (default 1000)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/policy.json"),
                        help="where to write the results")
    parser.add_argument("--png", type=Path, help="PNG: chunk delay histogram and the node's overhead over time")
    parser.add_argument("--backend", default="hold", choices=("hold", "builtin"),
                        help="policy backend in the node (default hold: no model time)")
    parser.add_argument("--checkpoint", default="", help="builtin checkpoint (default the shipped one)")
    parser.add_argument("--embodiment", default="arm7", help="the body the node drives (default arm7)")
    parser.add_argument("--seams", type=int, default=6,
                        help="builtin: expert episodes for the real-time-chunking seam measurement "
                             "(default 6, 0: skip)")
    args = parser.parse_args(argv)
    console = make_console()
    console.print(f"image conversions: {args.iterations} iterations each ...")
    images = image_conversions(args.iterations)
    console.print(f"policy_node ({args.backend}): request_rate_hz {args.request_rate:g}, waiting for the first chunk "
                  f"...")
    builtin = args.backend == "builtin"
    node = measure_node(args.seconds, args.warmup, args.request_rate, console, args.backend,
                        args.checkpoint if builtin else "", args.embodiment)
    model = None
    if builtin:
        from vla_ros.model.checkpoint import read_config
        from vla_ros.policy.builtin import DEFAULT_CHECKPOINT, checkpoint_path

        args.checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
        config = read_config(checkpoint_path(args.checkpoint))
        model = {"checkpoint": str(checkpoint_path(args.checkpoint)), "chunk_length": config.horizon, "dt": config.dt,
                 "denoising_steps": config.architecture.denoising_steps,
                 "inference_ms": {"p50": node["node_inference_p50_ms"], "p95": node["node_inference_p95_ms"]},
                 "seams": measure_seams(args.checkpoint, args.seams, console, args.embodiment) if args.seams else None}
    report = {"benchmark": "policy", "machine": platform.machine(), "processor": platform.processor(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "embodiment": args.embodiment,
              "backend": args.backend,
              "camera_rate_hz": CAMERA_RATE_HZ, "joint_states_rate_hz": STATE_RATE_HZ,
              "request_rate_hz": args.request_rate, "seconds": args.seconds, "warmup_s": args.warmup,
              "overhead_budget_ms": OVERHEAD_BUDGET_MS,
              "overhead_within_budget": bool(node["overhead_ms"]["p99"] <= OVERHEAD_BUDGET_MS),
              "node": node, "image_conversion": images, "model": model}
    print_report(console, report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.json}")
    if args.png:
        plot(args.png, node)
        console.print(f"wrote {args.png}")
    return report


if __name__ == "__main__":
    main()
