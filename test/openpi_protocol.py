"""A minimal client of the openpi websocket policy protocol, for interoperability tests.

Written from openpi's description of the protocol (`openpi_client/websocket_client_policy.py`,
`openpi_client/msgpack_numpy.py`, `openpi/serving/websocket_policy_server.py`) as an independent
reference: it deliberately imports nothing from `vla_ros.policy`, so a test that passes with it
shows that our server speaks openpi's protocol, not merely that it agrees with our own client.

The protocol: the client opens ws://host:port; the server first sends its metadata as a binary
msgpack frame; then each binary msgpack frame from the client is an observation, answered by a
binary msgpack map with "actions" (and "server_timing"), or by a text frame holding an error
message. numpy arrays travel as maps {b"__ndarray__": True, b"data": raw bytes, b"dtype":
dtype.str, b"shape": shape}, numpy scalars as {b"__npgeneric__": True, b"data": item, b"dtype":
dtype.str}.
"""
from __future__ import annotations

import contextlib
import threading

import msgpack
import numpy as np
from websockets.sync.client import connect
from websockets.sync.server import serve


def _pack_hook(value):
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "VOc":
            raise ValueError(f"unsupported dtype {value.dtype}")
        return {b"__ndarray__": True, b"data": value.tobytes(), b"dtype": value.dtype.str, b"shape": value.shape}
    if isinstance(value, np.generic):
        return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
    return value


def _unpack_hook(value: dict):
    if b"__ndarray__" in value:
        return np.ndarray(buffer=value[b"data"], dtype=np.dtype(value[b"dtype"]), shape=value[b"shape"])
    if b"__npgeneric__" in value:
        return np.dtype(value[b"dtype"]).type(value[b"data"])
    return value


def packb(message) -> bytes:
    return msgpack.Packer(default=_pack_hook).pack(message)


def unpackb(data: bytes):
    return msgpack.unpackb(data, object_hook=_unpack_hook)


class ServerError(RuntimeError):
    """The server answered with a text frame (its error message)."""


class OpenpiClient:
    """One connection: `metadata` as the server sent it, `infer(obs)` -> the reply map.

    With `api_key`, the handshake carries the header `Authorization: Api-Key KEY`, as openpi's
    `WebsocketClientPolicy(api_key=...)` sends it.
    """

    def __init__(self, host: str = "localhost", port: int = 8000, timeout_s: float = 5.0, api_key: str | None = None):
        self.timeout_s = timeout_s
        self._exit = contextlib.ExitStack()  # connect() as a context manager, as websockets >= 17.1 wants
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None  # as WebsocketClientPolicy sends it
        self.ws = self._exit.enter_context(connect(f"ws://{host}:{port}", compression=None, max_size=None,
                                                   open_timeout=timeout_s, additional_headers=headers))
        self.metadata = unpackb(self.ws.recv(timeout=timeout_s))

    def request(self, observation) -> dict | str:
        """Send one observation; the reply map, or the error text if the server sent a text frame."""
        self.ws.send(packb(observation))
        reply = self.ws.recv(timeout=self.timeout_s)
        return reply if isinstance(reply, str) else unpackb(reply)

    def infer(self, observation) -> dict:
        reply = self.request(observation)
        if isinstance(reply, str):
            raise ServerError(f"Error in inference server:\n{reply}")
        return reply

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> OpenpiClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class OpenpiServer:
    """A server speaking openpi's protocol as its `WebsocketPolicyServer` does, in a thread.

    It sends `metadata` on connect (openpi's DROID and LIBERO configs send {}), answers each
    observation with `answer(observation)` (a dict holding "actions"), and answers a text frame
    when `answer` finds the request wrong (AssertionError). `requests` keeps every observation
    received, `errors` the messages sent.
    """

    def __init__(self, answer, metadata: dict | None = None, port: int = 0):
        self.answer, self.metadata = answer, metadata or {}
        self.requests: list[dict] = []
        self.errors: list[str] = []
        self.server = serve(self._handle, "127.0.0.1", port, compression=None, max_size=None)
        self.port = self.server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, ws) -> None:
        ws.send(packb(self.metadata))
        for message in ws:
            observation = unpackb(message)
            self.requests.append(observation)
            try:
                reply = self.answer(observation)
            except AssertionError as error:  # a request the test's checks refuse: told as openpi tells errors
                self.errors.append(f"AssertionError: {error}")
                ws.send(self.errors[-1])
                continue
            ws.send(packb(reply))

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join(5)
