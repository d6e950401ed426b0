"""The sim's cameras, rendered and published by a child process of sim_node.

Rendering (Mesa on the CPU) and building 150 KB image messages in the simulator's own process
would take the GIL and CPU from its 500 Hz physics thread, and the robot's joint_states would
arrive late. So sim_node sends each state snapshot (stamp, qpos, mocap positions, the cameras due)
down a pipe to this process, which owns the GL context and a node of its own,
`<sim_node>_cameras`, that publishes the images and reports frames per camera and render times on
/diagnostics. A newer snapshot replaces one not yet rendered: frames are skipped, never the physics.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import mujoco
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from vla_ros.embodiment import load_embodiment
from vla_ros.nodes.base import OK, WARN, Report, RobotParams, VlaNode
from vla_ros.ros.image import to_image_msg
from vla_ros.ros.qos import SENSOR_DATA
from vla_ros.ros.time import to_stamp
from vla_ros.sim.world import World
from vla_ros.stats import Window

PR_SET_PDEATHSIG = 1
RENDER_WINDOW = 100  # frames in the render-time percentiles


@dataclass(frozen=True)
class CameraTopic:
    """A camera of the embodiment and the topic its images go to."""

    name: str
    topic: str  # fully qualified, resolved by sim_node (namespace and remappings applied)


class CameraNode(VlaNode):
    """Renders the snapshots sim_node sends down `connection` and publishes each due camera."""

    params_type = RobotParams

    def __init__(self, connection: Connection, cameras: list[CameraTopic], name: str, **node_options):
        super().__init__(name, **node_options)
        self.connection = connection
        self.world = World(load_embodiment(self.params.embodiment))
        self.hardware_id = self.world.embodiment.name
        self.data = mujoco.MjData(self.world.model)
        self.image_pubs = {c.name: self.create_publisher(Image, c.topic, SENSOR_DATA) for c in cameras}
        self.renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.frames = dict.fromkeys(self.image_pubs, 0)
        self.skipped = 0  # snapshots replaced by a newer one before they were rendered
        self.render_s = Window(RENDER_WINDOW)
        self.start_loop(self._render, "render")

    def _render(self) -> None:
        try:
            self._render_snapshots()
        finally:  # a renderer's GL context is current in this thread: only this thread can release it
            for renderer in self.renderers.values():
                renderer.close()

    def _render_snapshots(self) -> None:
        specs = self.world.embodiment.cameras
        while not self.stopping.is_set():
            try:
                if not self.connection.poll(0.1):
                    continue
                snapshot = self.connection.recv()
                while self.connection.poll():  # only the newest snapshot is worth rendering
                    snapshot = self.connection.recv()
                    self.skipped += 1
            except (EOFError, OSError):
                self.context.try_shutdown()  # sim_node closed the pipe: this process is done
                return
            stamp, qpos, mocap_pos, due = snapshot
            self.data.qpos[:] = qpos
            self.data.mocap_pos[:] = mocap_pos  # the tray and the distractor are placed per episode
            mujoco.mj_forward(self.world.model, self.data)
            for name in due:
                spec = specs[name]
                size = (spec.height, spec.width)
                if size not in self.renderers:
                    self.renderers[size] = mujoco.Renderer(self.world.model, *size)
                renderer = self.renderers[size]
                started = time.perf_counter()
                renderer.update_scene(self.data, camera=self.world.cameras[name])
                pixels = renderer.render()
                self.render_s.add(time.perf_counter() - started)
                self.image_pubs[name].publish(to_image_msg(pixels, to_stamp(stamp), spec.frame))
                self.frames[name] += 1

    def report(self) -> Report:
        values = {**{f"frames_{name}": count for name, count in self.frames.items()},
                  "snapshots_skipped": self.skipped, "render_p50_ms": f"{self.render_s.percentile(50) * 1e3:.1f}"}
        rendered = sum(self.frames.values())
        return Report(OK if rendered else WARN, f"{rendered} frames published" if rendered else "no frame yet", values)


def start(embodiment_path: str, cameras: list[CameraTopic], node_name: str, namespace: str,
          diagnostics_period_s: float) -> tuple[multiprocessing.Process, Connection]:
    """Start the worker (its node `node_name` in `namespace`, sim_node's).

    Returns it and the sending end of its pipe.
    """
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    worker = multiprocessing.get_context("spawn").Process(
        target=_main, args=(receiver, embodiment_path, cameras, node_name, namespace, diagnostics_period_s),
        daemon=True, name=node_name)
    worker.start()
    receiver.close()
    return worker, sender


def _main(connection: Connection, embodiment_path: str, cameras: list[CameraTopic], node_name: str,
          namespace: str, diagnostics_period_s: float) -> None:
    # Die with sim_node even if it is killed outright, and leave Ctrl-C to it.
    ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One rendering thread: Mesa would otherwise spread each frame over every core, in the way of
    # the physics thread next door.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    context = rclpy.Context()
    rclpy.init(args=[], context=context)  # not sim_node's --ros-args: a __node remap would rename this node too
    overrides = [Parameter("embodiment", value=embodiment_path),
                 Parameter("diagnostics_period_s", value=diagnostics_period_s)]
    node = CameraNode(connection, cameras, node_name, namespace=namespace, context=context,
                      start_parameter_services=False, parameter_overrides=overrides)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while context.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        node.close()
        node.destroy_node()
        context.try_shutdown()
