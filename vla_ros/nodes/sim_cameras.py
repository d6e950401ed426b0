"""The sim's cameras, rendered and published by a child process of sim_node.

Rendering (Mesa on the CPU) and building 150 KB image messages in the simulator's own process
would take the GIL and CPU from its 500 Hz physics thread, and the robot's joint_states would
arrive late. So sim_node sends each state snapshot (stamp, qpos, the cameras due) down a pipe to
this process, which owns the GL context and a ROS node of its own, and publishes the images.
A newer snapshot replaces one not yet rendered: frames are skipped, never the physics.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class CameraTopic:
    name: str
    topic: str  # fully qualified, resolved by sim_node (namespace and remappings applied)


def start(embodiment_path: str, cameras: list[CameraTopic], node_name: str,
          namespace: str = "/") -> tuple[multiprocessing.Process, Connection]:
    """Start the worker (its node `node_name` in `namespace`, sim_node's); returns it and the
    sending end of its pipe."""
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    worker = multiprocessing.get_context("spawn").Process(
        target=_main, args=(receiver, embodiment_path, cameras, node_name, namespace), daemon=True, name=node_name)
    worker.start()
    receiver.close()
    return worker, sender


def _main(connection: Connection, embodiment_path: str, cameras: list[CameraTopic], node_name: str,
          namespace: str) -> None:
    # Die with sim_node even if it is killed outright, and leave Ctrl-C to it.
    ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One rendering thread: Mesa would otherwise spread each frame over every core, in the way of
    # the physics thread next door.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    import mujoco
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from vla_ros.embodiment import load_embodiment
    from vla_ros.ros.image import to_image_msg
    from vla_ros.ros.time import to_stamp
    from vla_ros.sim.world import World

    world = World(load_embodiment(embodiment_path))
    data = mujoco.MjData(world.model)
    specs = world.embodiment.cameras
    context = rclpy.Context()
    rclpy.init(args=[], context=context)  # not sim_node's --ros-args: a __node remap would rename this node too
    node = rclpy.create_node(node_name, namespace=namespace, context=context, start_parameter_services=False)
    publishers = {c.name: node.create_publisher(Image, c.topic, qos_profile_sensor_data) for c in cameras}
    renderers = {}
    try:
        while True:
            try:
                snapshot = connection.recv()
                while connection.poll():  # only the newest snapshot is worth rendering
                    snapshot = connection.recv()
            except EOFError:
                return  # sim_node closed the pipe
            stamp, qpos, due = snapshot
            data.qpos[:] = qpos
            mujoco.mj_forward(world.model, data)
            for name in due:
                spec = specs[name]
                size = (spec.height, spec.width)
                if size not in renderers:
                    renderers[size] = mujoco.Renderer(world.model, *size)
                renderer = renderers[size]
                renderer.update_scene(data, camera=world.cameras[name])
                publishers[name].publish(to_image_msg(renderer.render(), to_stamp(stamp), spec.frame))
    finally:
        for renderer in renderers.values():
            renderer.close()
        node.destroy_node()
        context.try_shutdown()
