"""openpi's DROID, LIBERO and ALOHA policies on the shipped bodies, through the ROS graph.

A server speaking openpi's protocol (test/openpi_protocol.py, written from openpi's code, not
ours) checks every request exactly as openpi's example client builds it (examples/droid,
examples/libero, examples/aloha_real: keys, shapes, dtypes, layout) and answers in the preset's
action space; sim_node + controller_node + policy_node (remote with the preset) execute it, and
the states the server receives show the robot doing what was asked.
"""
import numpy as np
import pytest
from openpi_protocol import OpenpiServer

IMAGE = ((224, 224, 3), np.uint8)
CHANNELS_FIRST = ((3, 224, 224), np.uint8)


def check(observation: dict, expected: dict) -> None:
    """Keys exactly as expected; each array of its shape and dtype; strings are strings."""
    assert set(observation) == set(expected), f"keys {sorted(observation)}, expected {sorted(expected)}"
    for key, spec in expected.items():
        value = observation[key]
        if spec is str:
            assert isinstance(value, str) and value, f"{key}: {value!r} is not an instruction"
        elif isinstance(spec, dict):
            check(value, spec)
        else:
            shape, dtype = spec
            assert isinstance(value, np.ndarray), f"{key}: {type(value).__name__}, not an array"
            assert value.shape == shape and value.dtype == dtype, f"{key}: {value.shape} {value.dtype}"


def start_graph(ros, embodiment: str, preset: str, port: int, instruction: str) -> None:
    ros.start_node("sim_node", embodiment=embodiment)
    ros.start_node("controller_node", embodiment=embodiment)
    ros.start_node("policy_node", embodiment=embodiment, policy="remote", instruction=instruction,
                   policy_params=f"{{url: 'ws://127.0.0.1:{port}', preset: {preset}, timeout_s: 5.0}}")


def served(ros, server: OpenpiServer, until, what: str) -> None:
    """Spin until the server's requests satisfy `until`; fail on any request the server refused."""
    def done() -> bool:
        assert not server.errors, f"the server refused a request: {server.errors[0]}"
        return len(server.requests) > 1 and until(server.requests)
    ros.spin_until(done, 90, what)


@pytest.mark.slow
def test_droid_and_libero_presets_drive_arm7(ros):
    """DROID: joint velocities and a binary gripper; LIBERO: tool deltas in the base frame and -1 = open."""
    def droid(observation):
        check(observation, {"observation/exterior_image_1_left": IMAGE, "observation/wrist_image_left": IMAGE,
                            "observation/joint_position": ((7,), np.float64),
                            "observation/gripper_position": ((1,), np.float64), "prompt": str})
        actions = np.zeros((10, 8))
        actions[:, 0] = 0.1  # joint 1 at 0.1 x 0.2 rad per step at 15 Hz: 0.3 rad/s
        actions[:, 7] = 0.7  # past DROID's 0.5 threshold: closed
        return {"actions": actions}

    server = OpenpiServer(droid)
    try:
        start_graph(ros, "arm7", "droid", server.port, "pick up the red cube")
        joints = lambda r: r["observation/joint_position"]  # noqa: E731
        served(ros, server, lambda requests: joints(requests[-1])[0] - joints(requests[0])[0] > 0.3,
               "joint 1 turning at DROID's velocity")
        first, last = server.requests[0], server.requests[-1]
        # The held joints integrate zero velocity from the measured state (as a DROID robot's velocity
        # controller does), so they drift by their tracking error per chunk: a few hundredths of a radian.
        assert np.abs(joints(last)[1:] - joints(first)[1:]).max() < 0.1, "only joint 1 was asked to move"
        assert last["observation/gripper_position"][0] > 0.9, "the gripper closed (DROID: 1 = closed)"
        ros.processes[-1].stop()
    finally:
        server.close()

    def libero(observation):
        check(observation, {"observation/image": IMAGE, "observation/wrist_image": IMAGE,
                            "observation/state": ((8,), np.float64), "prompt": str})
        actions = np.zeros((10, 7))
        actions[:, 0] = 0.1  # +x at 0.1 x 0.05 m per 20 Hz step: 10 cm/s
        actions[:, 6] = -1.0  # open
        return {"actions": actions}

    server = OpenpiServer(libero)
    try:
        ros.start_node("policy_node", policy="remote", instruction="put the bowl on the plate",
                       policy_params=f"{{url: 'ws://127.0.0.1:{server.port}', preset: libero, timeout_s: 5.0}}")
        tool = lambda r: r["observation/state"][:3]  # noqa: E731
        start = None

        def moved(requests) -> bool:
            nonlocal start
            start = tool(requests[0]) if start is None else start
            return tool(requests[-1])[0] - start[0] > 0.06

        served(ros, server, moved, "the tool moving along +x")
        drift = tool(server.requests[-1])[1:] - start[1:]
        assert np.abs(drift).max() < 0.015, f"the tool left its line by {drift} m"
        assert server.requests[-1]["observation/state"][6] > 0.03, "the gripper opened (LIBERO: -1 = open)"
    finally:
        server.close()


@pytest.mark.slow
def test_aloha_preset_drives_the_humanoids_arms_and_a_chunk_of_no_space_holds_them(ros):
    """ALOHA: channel-first images, 14 absolute joint positions with grippers (0 closed, 1 open) on two arms.

    Then the server answers 13 columns: one clear error in policy_node's status, no chunk, and the
    controller holds the arms where they are.
    """
    targets = {}

    def aloha(observation):
        check(observation, {"images": {"cam_high": CHANNELS_FIRST}, "state": ((14,), np.float64),
                            "prompt": str})
        if not targets:
            state = observation["state"].copy()
            state[0] -= 0.3  # left shoulder pitch forward
            state[7] -= 0.3  # right shoulder pitch forward
            state[6], state[13] = 0.0, 1.0  # left hand closed, right hand open
            targets["state"] = state
        width = 13 if "wrong" in targets else 14
        return {"actions": np.tile(targets["state"], (50, 1))[:, :width]}

    server = OpenpiServer(aloha, metadata={"reset_pose": [0, -1.5, 1.5, 0, 0, 0]})
    try:
        diagnostics = ros.diagnostics()
        start_graph(ros, "humanoid_upper", "aloha", server.port, "hand over the cube")
        served(ros, server, lambda requests: np.abs(requests[-1]["state"] - targets["state"]).max() < 0.03,
               "both arms and hands at the ALOHA targets")
        targets["wrong"] = True
        status = diagnostics.wait("policy_node", lambda s: s["level"] == 2 and "fits no action space" in s["message"],
                                  20, "policy_node reporting the chunk that fits no space")
        assert "joint_position with columns" in status["message"] and "takes (H, 14)" in status["message"]
        diagnostics.wait("controller_node", lambda s: s["state"] == "holding", 20, "the controller holding")
        count = len(server.requests)
        served(ros, server, lambda requests: len(requests) > count + 3, "more requests while held")
        assert np.abs(server.requests[-1]["state"] - targets["state"]).max() < 0.03, "the arms moved while held"
    finally:
        server.close()
