"""Benchmark of the embedded simulator: physics steps per second and render time per frame.

For each shipped embodiment: steps of physics under the hardware interface (no rendering) per
wall second, and milliseconds per rendered frame of each of its cameras at its resolution.
Run with `vla-ros bench sim [--seconds S] [--json OUT]`.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import mujoco
import numpy as np

from vla_ros.embodiment import load_embodiment
from vla_ros.sim.episode import start_episode, step
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.world import World
from vla_ros.terminal import console as make_console

EMBODIMENTS = ("arm7", "mobile_manipulator", "humanoid_upper")


def physics(world: World, seconds: float) -> dict:
    hardware = SimHardware(world)
    start_episode(world, hardware, "reach", 0)
    control_dt = 1.0 / world.embodiment.control_rate_hz
    substeps = max(1, round(control_dt / world.model.opt.timestep))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(world, hardware, substeps, control_dt)
        steps += substeps
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "timestep_s": world.model.opt.timestep,
            "real_time_factor": steps * world.model.opt.timestep / elapsed}


def render(world: World, frames: int) -> dict:
    results = {}
    for name, camera in world.embodiment.cameras.items():
        with mujoco.Renderer(world.model, camera.height, camera.width) as renderer:
            renderer.update_scene(world.data, camera=world.cameras[name])
            renderer.render()  # warm-up: context and texture upload
            times = []
            for _ in range(frames):
                start = time.perf_counter()
                renderer.update_scene(world.data, camera=world.cameras[name])
                renderer.render()
                times.append((time.perf_counter() - start) * 1e3)
        results[name] = {"resolution": f"{camera.width}x{camera.height}", "ms_p50": float(np.percentile(times, 50)),
                         "ms_p95": float(np.percentile(times, 95))}
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="vla-ros bench sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="wall seconds of physics per embodiment")
    parser.add_argument("--frames", type=int, default=50, help="frames rendered per camera")
    parser.add_argument("--json", type=Path, default=Path("bench_results/sim.json"), help="where to write the results")
    args = parser.parse_args(argv)
    console = make_console()
    report = {"benchmark": "sim", "machine": platform.machine(), "processor": platform.processor(),
              "mujoco": mujoco.__version__, "embodiments": {}}
    for name in EMBODIMENTS:
        world = World(load_embodiment(name))
        report["embodiments"][name] = {"physics": physics(world, args.seconds), "render": render(world, args.frames)}
        result = report["embodiments"][name]
        cameras = ", ".join(f"{c} {r['resolution']} {r['ms_p50']:.1f} ms (p95 {r['ms_p95']:.1f})"
                            for c, r in result["render"].items())
        console.print(f"{name}: {result['physics']['steps_per_s']:.0f} physics steps/s "
                      f"({result['physics']['real_time_factor']:.1f}x real time); render {cameras}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
