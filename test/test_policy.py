"""The policy core without ROS: the embodiment mapping, backends, registry, wire format, schedule."""
import importlib.util
import struct
import zlib

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage

from vla_ros.embodiment import EmbodimentIO, LayoutError, load_embodiment
from vla_ros.embodiment.layout import pad
from vla_ros.media import resize
from vla_ros.policy import ActionChunk, Observation, PolicyError, make_policy, parameters, parse_params, wire
from vla_ros.policy.observation import parse_observation
from vla_ros.policy.replay import save_recording
from vla_ros.policy.schedule import ChunkSchedule
from vla_ros.ros.image import ImageError, from_compressed_msg, from_image_msg, to_compressed_msg, to_image_msg

ARM7 = load_embodiment("arm7")
MOBILE = load_embodiment("mobile_manipulator")


def observation(embodiment, state=None, stamp=10.0):
    io = EmbodimentIO(embodiment)
    images = {name: np.zeros((c.height, c.width, 3), np.uint8) for name, c in embodiment.cameras.items()}
    return Observation(images, io.home if state is None else state, "reach the red cube", stamp)


def test_state_and_actions_map_both_ways_through_the_padded_vector():
    io = EmbodimentIO(MOBILE)
    joints = np.arange(len(io.joints), dtype=float) / 10
    state = io.state(joints, base_velocity=(0.1, 0.2, 0.3))
    assert io.names == MOBILE.layout.names and io.base == "base"
    assert state.dtype == np.float32 and state.shape == (io.size,)
    padded = pad(np.tile(state, (4, 1)), MOBILE.layout.mask)
    assert padded.shape == (4, MOBILE.layout.width)
    assert np.all(padded[:, ~MOBILE.layout.mask] == 0)
    assert np.array_equal(io.unpad(padded)[0], state)
    positions, base = io.split(np.tile(state, (4, 1)))
    np.testing.assert_allclose(positions[0], joints, atol=1e-6)
    np.testing.assert_allclose(base[0], (0.1, 0.2, 0.3), atol=1e-6)
    with pytest.raises(LayoutError, match="width 32"):
        io.unpad(np.zeros(10))


def test_home_state_is_the_groups_home_and_a_fixed_base_has_no_base_slots():
    io = EmbodimentIO(ARM7)
    assert io.base is None and io.joints == io.names
    np.testing.assert_allclose(io.home, np.concatenate([ARM7.groups[s.group].home for s in ARM7.layout.slots]))
    positions, base = io.split(np.tile(io.home, (3, 1)))
    assert base is None and positions.shape == (3, 8)


def test_hold_answers_with_the_observed_pose_and_a_stopped_base():
    policy = make_policy("hold", MOBILE, {"chunk_length": 5, "dt": 0.1})
    io = EmbodimentIO(MOBILE)
    state = io.state(np.full(len(io.joints), 0.3), base_velocity=(0.5, 0.0, 0.2))
    chunk = policy.infer(observation(MOBILE, state, stamp=3.0))
    positions, base = io.split(chunk.actions)
    assert chunk.stamp == 3.0 and chunk.dt == 0.1 and chunk.actions.shape == (5, io.size)
    np.testing.assert_allclose(positions, 0.3, atol=1e-6)
    assert np.all(base == 0)
    np.testing.assert_allclose(chunk.times, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert policy.metadata["chunk_length"] == 5 and policy.metadata["state_names"] == list(io.names)
    with pytest.raises(PolicyError, match="shape"):
        policy.infer(observation(MOBILE, np.zeros(3, np.float32)))


def test_replay_plays_chunks_in_order_restamped_and_rewinds_on_reset(tmp_path):
    chunks = np.arange(3 * 4 * 8, dtype=np.float32).reshape(3, 4, 8)
    save_recording(tmp_path / "r.npz", chunks, 0.05)
    policy = make_policy("replay", ARM7, {"path": str(tmp_path / "r.npz"), "loop": False})
    played = [policy.infer(observation(ARM7, stamp=float(k))) for k in range(4)]
    assert [c.stamp for c in played] == [0.0, 1.0, 2.0, 3.0]
    for k, expected in enumerate([0, 1, 2, 2]):
        assert np.array_equal(played[k].actions, chunks[expected])
    policy.reset()
    assert np.array_equal(policy.infer(observation(ARM7)).actions, chunks[0])
    looping = make_policy("replay", ARM7, {"path": str(tmp_path / "r.npz")})
    assert np.array_equal([looping.infer(observation(ARM7)).actions[0, 0] for _ in range(4)], chunks[[0, 1, 2, 0], 0,
                                                                                                     0])


@pytest.mark.parametrize("actions, message", [
    (np.zeros((2, 4, 7), np.float32), r"needs \(N, H, 8\)"),
    (np.full((2, 4, 8), np.nan, np.float32), "non-finite"),
])
def test_replay_refuses_recordings_that_do_not_fit(tmp_path, actions, message):
    save_recording(tmp_path / "r.npz", actions, 0.05)
    with pytest.raises(PolicyError, match=message):
        make_policy("replay", ARM7, {"path": str(tmp_path / "r.npz")})
    with pytest.raises(PolicyError, match="cannot read"):
        make_policy("replay", ARM7, {"path": str(tmp_path / "missing.npz")})


@pytest.mark.parametrize("name, params, message", [
    ("hodl", {}, "no policy backend 'hodl' .*did you mean 'hold'"),
    ("lerobot", {"checkpoint": "nowhere"}, "nowhere is not a LeRobot checkpoint .no such directory"),
    ("builtin", {"checkpoint": "nowhere"}, "no checkpoint .nowhere."),
    ("hold", {"chunk_lenght": 3}, "no parameter 'chunk_lenght' .*did you mean 'chunk_length'.*takes: chunk_length, dt"),
    ("replay", {}, "needs the parameter.* path"),
    ("hold", {"chunk_length": 0}, "bad parameters"),
    ("remote", {"timeout_s": -1}, "bad parameters"),
])
def test_registry_errors_name_the_backend_and_the_fix(name, params, message):
    with pytest.raises(PolicyError, match=message):
        make_policy(name, ARM7, params)


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="LeRobot imports here: it would load")
def test_lerobot_refuses_what_is_no_checkpoint_and_says_how_to_get_lerobot(tmp_path, monkeypatch):
    """No policy "type", or no processors (LeRobot < 0.4), is no checkpoint; a good one without LeRobot says how."""
    monkeypatch.delenv("VLA_ROS_LEROBOT_PYTHON", raising=False)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").touch()
    for files, message in [((), 'names no policy "type"'), (("config.json",), "saved by a LeRobot before 0.4"),
                           (("policy_preprocessor.json", "policy_postprocessor.json"), "make lerobot-setup.*python=")]:
        for name in files:
            (tmp_path / name).write_text('{"type": "act"}')
        with pytest.raises(PolicyError, match=message):
            make_policy("lerobot", ARM7, {"checkpoint": str(tmp_path)})


def test_backend_parameters_come_from_yaml_and_key_value_pairs():
    assert parameters("hold") == {"chunk_length": 25, "dt": 0.04}
    assert parse_params("{url: ws://gpu:8000, timeout_s: 1.5}", ["loop=false", "dt=0.05", "api_key="]) == {
        "url": "ws://gpu:8000", "timeout_s": 1.5, "loop": False, "dt": 0.05, "api_key": ""}
    for text, pairs, message in [("[1, 2]", [], "YAML mapping"), ("{a: [", [], "not YAML"), ("", ["novalue"],
                                                                                             "KEY=VALUE")]:
        with pytest.raises(PolicyError, match=message):
            parse_params(text, pairs)


def test_wire_round_trips_arrays_and_scalars_in_openpi_layout():
    message = {"state": np.arange(5, dtype=np.float32), "images": {"front": np.ones((2, 3, 3), np.uint8)},
               "prompt": "hi", "n": np.int64(7), "nested": [np.float64(0.5)]}
    back = wire.unpack(wire.pack(message))
    assert back["state"].dtype == np.float32 and np.array_equal(back["state"], message["state"])
    assert back["images"]["front"].shape == (2, 3, 3) and back["prompt"] == "hi"
    assert back["n"] == 7 and isinstance(back["n"], np.int64) and back["nested"][0] == 0.5
    import msgpack
    raw = msgpack.unpackb(wire.pack({"a": np.zeros(2, np.float32)}))
    assert raw["a"] == {b"__ndarray__": True, b"data": bytes(8), b"dtype": "<f4", b"shape": [2]}
    with pytest.raises(PolicyError, match="no portable encoding"):
        wire.pack({"bad": np.array([object()])})
    with pytest.raises(PolicyError, match="not a msgpack-numpy message"):
        wire.unpack(b"\xc1")


def test_observations_from_requests_are_checked_and_resized():
    metadata = make_policy("hold", ARM7).metadata
    good = {"images": {"front": np.zeros((480, 640, 3), np.uint8), "wrist": np.zeros((224, 224, 3), np.uint8)},
            "state": np.zeros(8), "prompt": "reach", "stamp": 2.5}
    obs, prefix = parse_observation(good, metadata)
    assert obs.images["front"].shape == (224, 224, 3) and obs.state.dtype == np.float32 and obs.stamp == 2.5
    assert prefix is None
    bad = [
        ({**good, "state": np.zeros(7)}, r"'state' has shape \(7,\), expected \(8,\)"),
        ({**good, "state": np.full(8, np.nan)}, "NaN"),
        ({**good, "images": {"front": good["images"]["front"]}}, r"images\['wrist'\] must be"),
        ({**good, "images": {**good["images"], "wrist": np.zeros((224, 224, 3), np.float32)}}, "float32"),
        ({**good, "prompt": 3}, "'prompt' must be a string"),
        ({**good, "extra": 1}, "unknown observation keys"),
        ({**good, "prefix": np.zeros((3, 5))}, r"'prefix' has shape"),
        ([1, 2], "is a map"),
    ]
    for request, message in bad:
        with pytest.raises(PolicyError, match=message):
            parse_observation(request, metadata)


def test_resize_keeps_the_array_when_it_fits_and_averages_when_shrinking():
    image = np.zeros((4, 4, 3), np.uint8)
    assert resize(image, 4, 4) is image
    image[:2] = 200
    small = resize(image, 2, 2)
    assert small.shape == (2, 2, 3) and small[0, 0, 0] == 200 and small[1, 0, 0] == 0


def test_image_messages_convert_both_ways_and_bad_ones_are_refused():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    msg = to_image_msg(rgb, Time(sec=1), "cam")
    assert np.array_equal(from_image_msg(msg), rgb)
    msg.encoding, msg.data = "bgr8", rgb[..., ::-1].tobytes()
    assert np.array_equal(from_image_msg(msg), rgb)
    msg.encoding, msg.step, msg.data = "mono8", 5, rgb[..., 0].tobytes()
    assert np.array_equal(from_image_msg(msg), np.repeat(rgb[..., :1], 3, axis=2))
    msg.encoding = "16UC1"
    with pytest.raises(ImageError, match="16UC1"):
        from_image_msg(msg)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 1, 3))
    for fmt, tolerance in [("png", 0), ("jpeg", 8)]:
        compressed = to_compressed_msg(smooth, Time(sec=1), "cam", fmt)
        assert compressed.format == fmt
        assert np.abs(from_compressed_msg(compressed).astype(int) - smooth).max() <= tolerance
    for data in (b"not an image", b""):  # OpenCV asserts on empty data instead of failing
        compressed.data = data
        with pytest.raises(ImageError, match="cannot decode"):
            from_compressed_msg(compressed)
    for side, refusal in [(5000, "5000x5000 pixels"), (100_000, "too large to decode")]:
        png = bytearray(to_compressed_msg(smooth, Time(sec=1), "cam", "png").data)
        png[16:24] = struct.pack(">II", side, side)  # IHDR: a huge picture declared in a few hundred bytes
        png[29:33] = struct.pack(">I", zlib.crc32(png[12:29]))
        with pytest.raises(ImageError, match=refusal):
            from_compressed_msg(CompressedImage(format="png", data=bytes(png)))


def test_schedule_asks_at_the_fraction_left_or_sooner_when_inference_is_slow():
    schedule = ChunkSchedule(fraction=0.5, warmup=1)
    assert schedule.due(0.0)
    chunk = ActionChunk(np.zeros((10, 2)), 0.1, stamp=0.0)  # covers (0, 1] s
    schedule.answered(chunk, latency_s=5.0)  # warm-up: not counted
    assert schedule.delay == 0.0
    assert not schedule.due(0.45) and schedule.due(0.5)
    assert schedule.next_due() == pytest.approx(0.5), "when it falls due, for a sim in lockstep to stop there"
    schedule.answered(chunk, latency_s=0.6)
    assert schedule.delay == pytest.approx(0.6)
    assert not schedule.due(0.05) and schedule.due(0.15)  # 0.85 s left <= 1.5 x 0.6 s
    schedule.restart()
    assert schedule.due(0.0) and schedule.delay == 0.0 and schedule.next_due() == -np.inf
    fixed = ChunkSchedule(rate_hz=10.0)
    fixed.answered(chunk, 0.01)
    fixed.requested(0.0)
    assert not fixed.due(0.05) and fixed.due(0.1)


def test_prefix_is_the_executing_chunk_resampled_on_the_new_grid():
    schedule = ChunkSchedule()
    assert schedule.prefix(0.0, 0.1, 1.0) is None
    actions = np.column_stack([np.arange(1, 11) * 1.0, np.zeros(10)])  # value k+1 at t = 0.1 (k+1)
    schedule.answered(ActionChunk(actions, 0.1, stamp=0.0), 0.01)
    prefix = schedule.prefix(0.25, 0.1, until=0.62)
    np.testing.assert_allclose(prefix[:, 0], [3.5, 4.5, 5.5])  # at 0.35, 0.45, 0.55
    assert schedule.prefix(0.95, 0.1, until=2.0) is None  # nothing of the chunk left after 1.0
