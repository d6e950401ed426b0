"""policy_node through real DDS with the MuJoCo sim as the robot.

Freshness, instructions, the layered fallback (sim + controller + policy node with `remote` +
`vla-ros serve`), bad setups.
"""
import subprocess

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from harness import free_port, node_argv, start_policy_server
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.nodes.chunk_source_node import reference
from vla_ros.policy.replay import save_recording
from vla_ros.ros.image import to_image_msg
from vla_ros.ros.polled import polled_subscription, take_all
from vla_ros.ros.qos import LATCHED
from vla_ros.ros.time import to_seconds, to_stamp
from vla_ros.ros.trajectory import duration_seconds

ARM7 = load_embodiment("arm7")
IO = EmbodimentIO(ARM7)


def now(ros) -> float:
    return ros.node.get_clock().now().nanoseconds * 1e-9


def serve(ros, port, recording):
    return start_policy_server(ros, "--backend", "replay", "--param", f"path={recording}", port=port, timeout_s=60)[0]


def test_an_unknown_backend_stops_the_node_with_the_fix():
    result = subprocess.run(node_argv("policy_node", embodiment="arm7", policy="hodl"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "no policy backend 'hodl' (did you mean 'hold'?)" in result.stderr


def test_no_chunk_comes_from_a_camera_that_stopped(ros):
    """No chunk comes from a camera that stopped; its status names the camera.

    The wrist camera is fed by the test. When it stops, no chunk carries a newer observation stamp,
    at most the chunks under way arrive, the status names the camera; feeding again resumes.
    """
    ros.start_node("sim_node")
    policy = ros.start_node("policy_node", request_rate_hz=5.0, max_image_age_s=0.3,
                            remappings=[("camera/wrist/image_raw", "test/wrist")])
    wrist = ros.node.create_publisher(Image, "test/wrist", qos_profile_sensor_data)
    frame = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    fed = []

    def feed():
        if feeding:
            stamp = now(ros)
            wrist.publish(to_image_msg(frame, to_stamp(stamp), "wrist_camera_link"))
            fed.append(stamp)

    feeding = True
    ros.node.create_timer(0.1, feed)
    chunks = ros.subscribe("vla/action_chunk", JointTrajectory)
    diagnostics = ros.diagnostics()
    ros.spin_until(lambda: len(chunks) >= 3, 60, "chunks while both cameras run")

    feeding = False
    stopped, last_frame = now(ros), fed[-1]
    chunks.clear()
    status = diagnostics.wait("policy_node", lambda s: "camera wrist is stale" in s["message"], 10,
                              "a diagnostic naming the stale camera")
    assert status["level"] == 1  # WARN
    late = [to_seconds(c.header.stamp) for c in chunks]
    assert all(stamp <= last_frame for stamp in late), "a chunk claims an observation newer than the last frame"
    ros.spin_until(lambda: now(ros) > stopped + 2.0, 10, "two seconds without the camera")
    assert all(to_seconds(c.header.stamp) <= last_frame for c in chunks), "a chunk from a frame the camera never sent"
    # Each observation is newer than the last: once the camera stops, only the request under way and
    # one from its last frame can still answer, however long the node waits.
    assert len(chunks) <= 2, f"{len(chunks)} chunks after the camera stopped"

    feeding = True
    ros.spin_until(lambda: any(to_seconds(c.header.stamp) > last_frame for c in chunks), 20, "chunks again")
    assert policy.running()


def test_a_new_instruction_or_a_hand_back_resets_the_policy_and_asks_at_once(ros, tmp_path):
    """A new instruction, or a person handing back, resets the policy and asks for a chunk at once.

    With replay (chunk k = value k) and long chunks (5 s) the next request would be seconds away: a
    new instruction brings chunk 0 again first, computed from frames taken after it arrived. While a
    person drives (vla/intervention) nothing is asked; their hand-back brings chunk 0 again.
    """
    chunks = np.stack([np.tile(IO.home + 0.01 * k, (50, 1)) for k in range(5)])
    save_recording(tmp_path / "r.npz", chunks, 0.1)
    received = ros.subscribe("vla/action_chunk", JointTrajectory)
    diagnostics = ros.diagnostics()
    ros.start_node("sim_node")
    ros.start_node("policy_node", policy="replay", policy_params=f"{{path: {tmp_path / 'r.npz'}}}",
                   request_fraction=0.1)

    def index(chunk):
        return int(round((chunk.points[0].positions[0] - IO.home[0]) / 0.01))

    # The first chunk may go out before this subscription is matched: judge by consecutive ones.
    ros.spin_until(lambda: len(received) >= 2 and 1 <= index(received[-1]) <= 3, 60,
                   "two chunks by the fraction rule, the last one of chunks 1-3")
    assert index(received[-1]) == index(received[-2]) + 1
    chunks_before = list(received)
    received.clear()
    instruction = ros.node.create_publisher(String, "vla/instruction", LATCHED)
    sent = now(ros)
    instruction.publish(String(data="push the blue cube to the left"))
    ros.spin_until(lambda: received, 10, "a chunk for the new instruction")
    first = to_seconds(received[0].header.stamp)
    assert first < to_seconds(chunks_before[-1].header.stamp) + 5.0 * 0.9, \
        "the chunk came from the instruction, not from the schedule (the running chunk had 90% left)"
    assert index(received[0]) == 0, "the policy was not reset"
    assert all(to_seconds(c.header.stamp) >= sent for c in received), "a chunk from a frame before the instruction"
    diagnostics.wait("policy_node", lambda s: s["instruction"] == "push the blue cube to the left", 5,
                     "the instruction in diagnostics")

    # A person takes over: no requests while they drive; the hand-back resets and asks at once.
    intervention = ros.node.create_publisher(Bool, "vla/intervention", 10)
    ros.spin_until(lambda: intervention.get_subscription_count() > 0, 10, "the policy on vla/intervention")
    intervention.publish(Bool(data=True))
    diagnostics.wait("policy_node", lambda s: "a person is driving" in s["message"], 5, "the pause in diagnostics")
    received.clear()
    paused = now(ros)
    ros.spin_until(lambda: now(ros) > paused + 1.0, 5, "a second of the person driving")
    assert not received, "a chunk while a person drove"
    handed_back = now(ros)
    intervention.publish(Bool(data=False))
    ros.spin_until(lambda: received, 10, "a chunk after the hand-back")
    assert index(received[0]) == 0, "the policy was not reset at the hand-back"
    assert to_seconds(received[0].header.stamp) >= handed_back, "a chunk from a frame before the hand-back"


def test_layered_fallback_the_robot_holds_when_the_server_dies_and_resumes_when_it_returns(ros, tmp_path):
    """The robot holds when the policy server dies, and resumes when it returns.

    Sim + controller + policy_node(remote) + `vla-ros serve` (replay of a smooth motion). Killing the
    server: the controller finishes the chunk and holds within limits, the policy node reports the
    loss. Restarting it: chunks resume, no node restarted.
    """
    horizon, dt = 25, 0.04
    times = dt * np.arange(1, horizon + 1)
    chunks = np.stack([reference(ARM7, 0.5 * i + times, 0.15, 0.25) for i in range(40)])
    save_recording(tmp_path / "motion.npz", chunks, dt)
    port = free_port()
    server = serve(ros, port, tmp_path / "motion.npz")
    nodes = [
        ros.start_node("sim_node"),
        ros.start_node("controller_node"),
        ros.start_node("policy_node", policy="remote",
                       policy_params=f"{{url: 'ws://localhost:{port}', timeout_s: 1.0}}"),
    ]
    states = polled_subscription(ros.node, JointState, "joint_states", 5000)
    received = ros.subscribe("vla/action_chunk", JointTrajectory)
    diagnostics = ros.diagnostics()
    diagnostics.wait("controller_node", lambda s: s["message"] == "tracking chunks", 90,
                     "the controller tracking chunks")
    ros.spin_until(lambda: len(received) >= 5, 30, "chunks flowing")
    take_all(states)
    count = len(received)
    ros.spin_until(lambda: len(received) > count, 5, "a fresh chunk")  # kill mid-chunk, not in a gap

    server.popen.kill()
    killed = now(ros)
    server.popen.wait()
    last_end = max(to_seconds(c.header.stamp) + duration_seconds(c.points[-1].time_from_start) for c in received)
    status = diagnostics.wait("policy_node", lambda s: s["level"] == 2 and "disconnected" in s["backend_state"], 10,
                              "the policy node reporting the lost server")
    assert "ws://localhost" in status["message"]
    diagnostics.wait("controller_node", lambda s: s["state"] == "holding", 10, "the controller holding")
    ros.spin_until(lambda: now(ros) > last_end + 1.5, 10, "the robot at rest after its last chunk")
    late = [c for c in received if to_seconds(c.header.stamp) > killed]
    assert not late, "chunks after the server died"
    # In stamp order: DDS may hand over a message or two out of order, which is not motion.
    motion = sorted([(to_seconds(m.header.stamp), np.array([m.position[list(m.name).index(j)] for j in IO.joints]))
                     for m in take_all(states)], key=lambda entry: entry[0])
    stamps = np.array([t for t, _ in motion])
    q = np.array([p for _, p in motion])
    limits = [(ARM7.groups[s.group], s) for s in ARM7.layout.slots]
    lower = np.concatenate([g.lower for g, _ in limits])
    upper = np.concatenate([g.upper for g, _ in limits])
    velocity = np.concatenate([g.velocity_limit for g, _ in limits])
    assert np.all(q >= lower - 1e-3) and np.all(q <= upper + 1e-3), "left the position limits"
    speeds = np.abs(np.diff(q, axis=0)) / np.diff(stamps)[:, None]
    assert np.all(speeds <= velocity * 1.05), f"faster than the limits: {speeds.max(axis=0)}"
    assert np.ptp(q[stamps < last_end][:, :7], axis=0).max() > 0.02, "the arm was not moving: nothing to finish"
    held = q[stamps > last_end + 0.5]
    assert len(held) and np.ptp(held[:, :7], axis=0).max() < 0.01, "the arm did not come to rest"

    pids = [n.popen.pid for n in nodes]
    received.clear()
    serve(ros, port, tmp_path / "motion.npz")
    ros.spin_until(lambda: len(received) >= 3, 30, "chunks after the server came back")
    diagnostics.wait("controller_node", lambda s: s["message"] == "tracking chunks", 10, "tracking again")
    diagnostics.wait("policy_node", lambda s: s["level"] == 0 and s["backend_state"].startswith("connected"), 10,
                     "the policy node healthy again")
    assert [n.popen.pid for n in nodes] == pids and all(n.running() for n in nodes), "a node restarted or died"
