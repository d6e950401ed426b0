"""`vla-ros serve` against the openpi websocket protocol, from both ends.

The acceptance check: a test starts `vla-ros serve` and talks to it with an implementation of
the openpi protocol written from its documentation (test/openpi_protocol.py, not our own client
code), checking metadata, action shape and an error reply; our `remote` backend against our
server passes the same checks. Then how `remote` behaves with no server, and with one that dies;
last, the server facing a network: loopback by default, the API key, TLS, its limits, one model
for every client, and no tracebacks to clients.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
import trustme
from openpi_protocol import OpenpiClient, ServerError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness import free_port, isolated, start_policy_server
from vla_ros.embodiment import load_embodiment
from vla_ros.policy import BackendUnavailable, Observation, PolicyError, make_policy
from vla_ros.policy import builtin as builtin_module
from vla_ros.policy import remote as remote_module
from vla_ros.policy.hold import HoldPolicy
from vla_ros.policy.replay import save_recording
from vla_ros.policy.server import Limits, PolicyServer, policy_server, server_metadata, tls_context

STATE_SIZE = 8  # arm7: seven joints and the finger
CAMERAS = {"front": [224, 224, 3], "wrist": [224, 224, 3]}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A harness for the servers shared by this module's tests; nothing outlives the module."""
    with isolated(tmp_path_factory.mktemp("servers")) as harness:
        yield harness


@pytest.fixture(scope="module")
def hold_port(servers):
    return start_policy_server(servers, "--backend", "hold", name="serve-hold")[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Three distinct chunks of 4 actions: chunk i is all i + column / 100."""
    chunks = np.stack([np.full((4, STATE_SIZE), i, dtype=np.float32) + np.arange(STATE_SIZE) / 100 for i in range(3)])
    path = tmp_path_factory.mktemp("recording") / "chunks.npz"
    save_recording(path, chunks, dt=0.05)
    return path, chunks.astype(np.float32)


@pytest.fixture(scope="module")
def replay_port(servers, recording):
    return start_policy_server(servers, "--backend", "replay", "--param", f"path={recording[0]}",
                               name="serve-replay")[1]


def observation_dict(state=None, images=None, prompt="reach the red cube") -> dict:
    """An observation in the protocol's form (plain numpy, nothing of ours)."""
    if images is None:
        images = {name: np.full(shape, 7, dtype=np.uint8) for name, shape in CAMERAS.items()}
    if state is None:
        state = np.linspace(-1, 1, STATE_SIZE, dtype=np.float32)
    return {"images": images, "state": state, "prompt": prompt}


def observation(state=None, images=None) -> Observation:
    """The same observation as our backends take it."""
    request = observation_dict(state, images)
    return Observation(request["images"], request["state"], request["prompt"], time.time())


def remote(port: int, **params):
    return make_policy("remote", load_embodiment("arm7"), {"url": f"ws://localhost:{port}", **params})


def infer_once_back(policy, timeout_s: float = 15.0):
    """policy.infer until the backend is reachable again; only BackendUnavailable is tolerated."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return policy.infer(observation())
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- the reference openpi client against `vla-ros serve` -------------------------------------------


def test_metadata_describes_the_backend_and_its_example_observation_gets_actions(hold_port):
    with OpenpiClient("localhost", hold_port) as client:
        metadata = client.metadata
        assert metadata["server"] == "vla_ros"
        assert metadata["backend"] == "hold"
        assert metadata["embodiment"] == "arm7"
        assert metadata["cameras"] == CAMERAS
        assert len(metadata["state_names"]) == STATE_SIZE
        assert isinstance(metadata["chunk_length"], int) and metadata["chunk_length"] >= 1
        assert metadata["dt"] > 0
        example = metadata["example_observation"]
        assert {name: list(image.shape) for name, image in example["images"].items()} == CAMERAS
        assert example["state"].dtype == np.float32 and example["state"].shape == (STATE_SIZE,)

        reply = client.infer(example)  # sent back exactly as it came

        actions = reply["actions"]
        assert actions.shape == (metadata["chunk_length"], STATE_SIZE) and actions.dtype == np.float32
        np.testing.assert_array_equal(actions, np.tile(example["state"], (metadata["chunk_length"], 1)))
        assert "server_timing" in reply


@pytest.mark.parametrize("bad, words", [
    (observation_dict(state=np.zeros(STATE_SIZE - 1, dtype=np.float32)), ["state", f"{STATE_SIZE}"]),
    (observation_dict(images={"front": np.zeros((224, 224, 3), dtype=np.uint8)}), ["wrist"]),
    (observation_dict(state=np.array([0, 0, np.nan, 0, 0, 0, 0, 0], dtype=np.float32)), ["state", "NaN"]),
    (observation_dict(images={**observation_dict()["images"], "front": np.zeros((224, 224, 3), np.float32)}),
     ["front", "uint8", "float32"]),
    (observation_dict(images={**observation_dict()["images"], "wrist": np.zeros((0, 0, 3), np.uint8)}),
     ["wrist", "(0, 0, 3)"]),
    ("a text frame", ["binary"]),
    ({"images": {}, "state": [0.0] * STATE_SIZE, "prompt": "x", "speed": 2}, ["speed"]),
], ids=["short state", "missing camera", "NaN state", "float image", "empty image", "text frame", "unknown key"])
def test_a_bad_observation_gets_an_error_reply_and_the_connection_stays(hold_port, bad, words):
    with OpenpiClient("localhost", hold_port) as client:
        if isinstance(bad, str):
            client.ws.send(bad)
            reply = client.ws.recv(timeout=client.timeout_s)
        else:
            reply = client.request(bad)
        assert isinstance(reply, str), f"expected an error text frame, got {reply!r}"
        for word in words:
            assert word in reply, f"{word!r} not in the error {reply!r}"
        with pytest.raises(ServerError, match="Error in inference server"):
            client.infer(bad if not isinstance(bad, str) else {"state": "nonsense"})

        good = observation_dict()
        reply = client.infer(good)  # the same connection still answers
        np.testing.assert_array_equal(reply["actions"][0], good["state"])


@pytest.mark.parametrize("message", [
    b"\xc1 is never msgpack",
    msgpack.packb({b"__ndarray__": True, b"dtype": "<f4", b"shape": [2]}),  # no data
    msgpack.packb({b"__ndarray__": True, b"data": b"abc", b"dtype": "<f4", b"shape": [2]}),  # too little
], ids=["not msgpack", "ndarray without data", "ndarray too short"])
def test_a_message_that_is_not_msgpack_numpy_gets_an_error_reply(hold_port, message):
    with OpenpiClient("localhost", hold_port) as client:
        client.ws.send(message)
        reply = client.ws.recv(timeout=client.timeout_s)
        assert isinstance(reply, str) and reply.startswith("not a msgpack-numpy message"), reply
        assert client.infer(observation_dict())["actions"].shape[1] == STATE_SIZE


def test_healthz_answers_200_over_plain_http(hold_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{hold_port}/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.read().strip() == b"OK"


def test_images_of_another_resolution_are_resized(hold_port):
    images = {"front": np.zeros((480, 640, 3), dtype=np.uint8), "wrist": np.zeros((96, 128, 3), dtype=np.uint8)}
    with OpenpiClient("localhost", hold_port) as client:
        state = np.arange(STATE_SIZE, dtype=np.float32) / 10
        reply = client.infer(observation_dict(state=state, images=images))
        assert reply["actions"].shape == (client.metadata["chunk_length"], STATE_SIZE)
        np.testing.assert_array_equal(reply["actions"][-1], state)


def test_each_connection_has_its_own_policy_state(replay_port, recording):
    _, chunks = recording
    with OpenpiClient("localhost", replay_port) as a, OpenpiClient("localhost", replay_port) as b:
        assert a.metadata["backend"] == "replay" and a.metadata["chunk_length"] == chunks.shape[1]
        first_a = a.infer(observation_dict())["actions"]
        first_b = b.infer(observation_dict())["actions"]
        second_a = a.infer(observation_dict())["actions"]
    np.testing.assert_array_equal(first_a, chunks[0])
    np.testing.assert_array_equal(second_a, chunks[1])
    np.testing.assert_array_equal(first_b, chunks[0])


# --- our `remote` backend against `vla-ros serve`: the same checks ----------------------------------


def test_remote_gets_the_servers_metadata_and_actions(hold_port):
    policy = remote(hold_port)
    try:
        sent = observation()
        chunk = policy.infer(sent)
        metadata = policy.metadata
        assert metadata["server"] == "vla_ros" and metadata["backend"] == "hold" and metadata["embodiment"] == "arm7"
        assert metadata["cameras"] == CAMERAS and len(metadata["state_names"]) == STATE_SIZE
        assert chunk.actions.shape == (metadata["chunk_length"], STATE_SIZE) and chunk.actions.dtype == np.float32
        np.testing.assert_array_equal(chunk.actions, np.tile(sent.state, (metadata["chunk_length"], 1)))
        assert chunk.dt == metadata["dt"] > 0 and chunk.stamp == sent.stamp
        assert policy.state.startswith("connected")
    finally:
        policy.close()


@pytest.mark.parametrize("bad, words", [
    (observation(state=np.zeros(STATE_SIZE - 1, dtype=np.float32)), ["state", f"{STATE_SIZE}"]),
    (observation(images={"front": np.zeros((224, 224, 3), dtype=np.uint8)}), ["wrist"]),
    (observation(state=np.full(STATE_SIZE, np.inf, dtype=np.float32)), ["state", "Inf"]),
    (observation(images={"front": np.zeros((224, 224, 3), np.float32), "wrist": np.zeros((224, 224, 3), np.uint8)}),
     ["front", "uint8"]),
], ids=["short state", "missing camera", "Inf state", "float image"])
def test_remote_raises_the_servers_error_and_keeps_the_connection(hold_port, bad, words):
    policy = remote(hold_port)
    try:
        policy.infer(observation())
        connection = policy.ws
        with pytest.raises(PolicyError) as raised:
            policy.infer(bad)
        assert not isinstance(raised.value, BackendUnavailable), raised.value
        for word in words:
            assert word in str(raised.value)
        assert policy.ws is connection and policy.state.startswith("connected")
        assert policy.infer(observation()).actions.shape[1] == STATE_SIZE
    finally:
        policy.close()


def test_remote_clients_do_not_share_state_and_reset_starts_over(replay_port, recording):
    _, chunks = recording
    a, b = remote(replay_port), remote(replay_port)
    try:
        first_a = a.infer(observation()).actions
        first_b = b.infer(observation()).actions
        second_a = a.infer(observation()).actions
        a.reset()
        after_reset = a.infer(observation()).actions
        second_b = b.infer(observation()).actions
    finally:
        a.close()
        b.close()
    np.testing.assert_array_equal(first_a, chunks[0])
    np.testing.assert_array_equal(second_a, chunks[1])
    np.testing.assert_array_equal(first_b, chunks[0])
    np.testing.assert_array_equal(after_reset, chunks[0])
    np.testing.assert_array_equal(second_b, chunks[1])


# --- `remote` without a server, and with one that dies ---------------------------------------------


def test_remote_without_a_server_backs_off_and_connects_once_it_is_up(ros, monkeypatch):
    attempts = []

    def counting_connect(*args, **kwargs):
        attempts.append(time.monotonic())
        return connect(*args, **kwargs)

    connect = remote_module.connect
    monkeypatch.setattr(remote_module, "connect", counting_connect)
    port = free_port()
    policy = remote(port, connect_timeout_s=3.0, backoff_s=0.5, max_backoff_s=0.5)
    try:
        with pytest.raises(BackendUnavailable, match="cannot connect") as unavailable:
            policy.infer(observation())
        assert "refused" in str(unavailable.value), "refused at once, not timed out"
        assert len(attempts) == 1

        with pytest.raises(BackendUnavailable, match="next attempt"):
            policy.infer(observation())  # within the backoff: no new attempt
        assert len(attempts) == 1

        start_policy_server(ros, "--backend", "hold", port=port)
        chunk = infer_once_back(policy)
        assert chunk.actions.shape[1] == STATE_SIZE and len(attempts) >= 2
        assert policy.state.startswith("connected")
    finally:
        policy.close()


def test_remote_reports_a_killed_server_as_unavailable_and_reconnects_to_its_successor(ros):
    server, port = start_policy_server(ros, "--backend", "hold", name="serve-first")
    policy = remote(port, backoff_s=0.1, max_backoff_s=0.5)
    try:
        policy.infer(observation())
        server.popen.kill()  # SIGKILL: no close frame, the socket simply goes away
        server.popen.wait(timeout=5)

        with pytest.raises(BackendUnavailable):
            policy.infer(observation())
        for _ in range(3):  # and again while it stays down: backoff or refused, nothing else
            with pytest.raises(BackendUnavailable):
                policy.infer(observation())
        assert not policy.state.startswith("connected")

        start_policy_server(ros, "--backend", "hold", port=port, name="serve-second")
        chunk = infer_once_back(policy)
        assert chunk.actions.shape[1] == STATE_SIZE and policy.state.startswith("connected")
    finally:
        policy.close()


# --- facing a network ----------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(server: PolicyServer):
    """`server` listening in a thread of this process; its port."""
    listening = threading.Event()
    ports = []
    thread = threading.Thread(target=asyncio.run, args=(server.serve(lambda port: (ports.append(port),
                                                                                  listening.set())),), daemon=True)
    thread.start()
    assert listening.wait(30), "the server did not listen"
    try:
        yield ports[0]
    finally:
        server.stop()
        thread.join(10)


def hold_server(**options) -> PolicyServer:
    return policy_server("hold", load_embodiment("arm7"), {}, port=0, **options)


def outward_address() -> str:
    """An address of this machine other than loopback (the one a route out would use)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # UDP: nothing is sent, the kernel only picks the interface
            address = probe.getsockname()[0]
    except OSError:
        address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


def refused_status(**client) -> int:
    with pytest.raises(InvalidStatus) as refused:
        OpenpiClient("127.0.0.1", **client)
    return refused.value.response.status_code


def test_serve_without_host_listens_on_loopback_only(hold_port):
    address = outward_address()
    with socket.create_connection(("127.0.0.1", hold_port), timeout=5):
        pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, hold_port), timeout=5)
    with serving(policy_server("hold", load_embodiment("arm7"), {}, host="0.0.0.0", port=0)) as port:
        with socket.create_connection((address, port), timeout=5):  # the check can see a reachable server
            pass


def test_a_client_without_the_key_is_refused_and_one_with_it_is_served():
    server = hold_server(api_key="s3cret")
    with serving(server) as port:
        assert refused_status(port=port) == 401
        assert refused_status(port=port, api_key="s3cre") == 401
        with OpenpiClient("127.0.0.1", port, api_key="s3cret") as client:  # openpi's client sends the same header
            assert client.infer(observation_dict())["actions"].shape[1] == STATE_SIZE
        ours = remote(port, api_key="s3cret")
        try:
            assert ours.infer(observation()).actions.shape[1] == STATE_SIZE
        finally:
            ours.close()
        with pytest.raises(BackendUnavailable, match="401"):
            remote(port).infer(observation())
    assert server.refused["unauthorized"] == 3


def test_a_key_given_twice_is_refused_and_a_prompt_over_the_limit_is_an_error():
    server = hold_server(api_key="s3cret")
    with serving(server) as port:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}", additional_headers=[("Authorization", "Api-Key s3cret")] * 2)
        assert refused.value.response.status_code == 401
        with OpenpiClient("127.0.0.1", port, api_key="s3cret") as client:
            reply = client.request(observation_dict(prompt="reach " * 400))
            assert isinstance(reply, str) and "2400 characters" in reply


def test_a_message_over_the_limit_closes_that_connection_only():
    server = hold_server()
    assert server.max_message_bytes > 2 * (480 * 640 * 3)  # a client's own camera frames still fit
    with serving(server) as port, OpenpiClient("127.0.0.1", port) as flooder, OpenpiClient("127.0.0.1", port) as other:
        assert flooder.metadata["max_message_bytes"] == server.max_message_bytes
        flooder.ws.send(bytes(server.max_message_bytes + 1))
        with pytest.raises(ConnectionClosed) as closed:
            flooder.ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
        assert other.infer(observation_dict())["actions"].shape[1] == STATE_SIZE
    assert server.refused["oversized"] == 1


def test_past_max_connections_a_client_is_refused_until_one_leaves():
    server = hold_server(limits=Limits(max_connections=1))
    with serving(server) as port:
        with OpenpiClient("127.0.0.1", port) as first:
            assert refused_status(port=port) == 503
            assert first.infer(observation_dict())["actions"].shape[1] == STATE_SIZE
        deadline = time.monotonic() + 10
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        with OpenpiClient("127.0.0.1", port) as second:
            assert second.infer(observation_dict())["actions"].shape[1] == STATE_SIZE
    assert server.refused["full"] == 1


def test_an_idle_connection_is_closed_and_remote_connects_again_at_its_next_request():
    server = hold_server(limits=Limits(idle_timeout_s=0.2))
    with serving(server) as port:
        with OpenpiClient("127.0.0.1", port) as client:
            with pytest.raises(ConnectionClosed) as closed:
                client.ws.recv(timeout=30)
            assert closed.value.rcvd.code == 1000 and "idle" in closed.value.rcvd.reason
        ours = remote(port)
        try:
            ours.infer(observation())
            deadline = time.monotonic() + 30
            while server.refused["idle"] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ours.infer(observation()).actions.shape[1] == STATE_SIZE, "no backoff after a clean close"
        finally:
            ours.close()
    assert server.refused["idle"] >= 2


class Failing(HoldPolicy):
    """A backend that fails with an error naming its internals."""

    def infer(self, observation, prefix=None):
        raise RuntimeError("internals: /secret/path line 7")


def test_a_failing_backend_tells_the_client_one_line_and_its_log_the_traceback(caplog):
    policy = Failing(load_embodiment("arm7"))
    server = PolicyServer(policy, server_metadata(policy, np.zeros(STATE_SIZE), "reach"), port=0)
    with caplog.at_level(logging.ERROR, "vla_ros.policy_server"), serving(server) as port, \
            OpenpiClient("127.0.0.1", port) as client:
        reply = client.request(observation_dict())
    assert isinstance(reply, str) and "\n" not in reply and "RuntimeError" in reply, reply
    assert "secret" not in reply and "Traceback" not in reply
    assert "Traceback" in caplog.text and "/secret/path" in caplog.text


def test_tls_serves_wss_to_clients_that_trust_its_certificate(tmp_path):
    authority = trustme.CA()
    pem = tmp_path / "server.pem"
    authority.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
    trusted = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(trusted)
    server = hold_server(tls=tls_context(str(pem), str(pem)))
    with serving(server) as port:
        secure = make_policy("remote", load_embodiment("arm7"), {"url": f"wss://localhost:{port}",
                                                                 "ca_file": str(trusted)})
        try:
            assert secure.infer(observation()).actions.shape[1] == STATE_SIZE
        finally:
            secure.close()
        with pytest.raises(BackendUnavailable, match="certificate"):  # an authority it does not know: no connection
            make_policy("remote", load_embodiment("arm7"), {"url": f"wss://localhost:{port}"}).infer(observation())
        with pytest.raises(BackendUnavailable):
            make_policy("remote", load_embodiment("arm7"), {"url": f"ws://localhost:{port}"}).infer(observation())
    with pytest.raises(PolicyError, match="ca_file"):
        make_policy("remote", load_embodiment("arm7"), {"url": "wss://localhost:1", "ca_file": str(tmp_path / "no")})


def test_the_model_loads_once_and_each_client_has_its_own_episode(monkeypatch):
    loads = []

    def counted(path):
        loads.append(path)
        return load_checkpoint(path)

    load_checkpoint = builtin_module.load_checkpoint
    monkeypatch.setattr(builtin_module, "load_checkpoint", counted)
    server = policy_server("builtin", load_embodiment("arm7"), {"checkpoint": "arm7"}, port=0)
    with serving(server) as port:
        clients = [OpenpiClient("127.0.0.1", port, timeout_s=60) for _ in range(3)]
        try:
            example = clients[0].metadata["example_observation"]
            firsts = [client.infer(example)["actions"] for client in clients]
            second = clients[0].infer(example)["actions"]
            clients[0].request({"reset": True})
            again = clients[0].infer(example)["actions"]
        finally:
            for client in clients:
                client.close()
    assert len(loads) == 1
    for first in firsts[1:]:  # each episode starts from the same seeded noise ...
        np.testing.assert_array_equal(first, firsts[0])
    assert not np.array_equal(second, firsts[0])  # ... and goes on with its own
    np.testing.assert_array_equal(again, firsts[0])
