"""`remote`: a policy served over the openpi websocket protocol (a big VLA on a GPU machine).

The protocol (openpi's `serving/websocket_policy_server.py` and `openpi_client`): the client opens
a websocket; the server first sends its metadata (a msgpack map); then each binary message from
the client is an observation and each reply is a map with "actions" (H, D); a text reply is the
server's error message. Observations go out as {"images": {camera: HxWx3 uint8}, "state": (D,)
float32, "prompt": str} by default; `images_key`, `image_keys`, `state_key`, `prompt_key` and
`actions_key` adapt the names to another server's (`images_key: ""` puts images at the top level).

Never blocks for long and never raises anything but PolicyError: a refused connection, a
timeout or a dropped link make `infer` raise BackendUnavailable, and the next attempt to connect
waits an exponentially growing backoff (reset by a success). A request that times out drops the
connection: its late reply would otherwise answer the next request.
"""
from __future__ import annotations

import time

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from vla_ros import __version__
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy import wire
from vla_ros.policy.interface import ActionChunk, BackendUnavailable, Observation, Policy, PolicyError
from vla_ros.policy.registry import backend, describe


@backend("remote")
class RemotePolicy(Policy):
    """A policy served over the openpi websocket protocol, reconnected with exponential backoff."""

    def __init__(self, embodiment: Embodiment, url: str = "ws://localhost:8000", timeout_s: float = 2.0,
                 connect_timeout_s: float = 2.0, backoff_s: float = 0.25, max_backoff_s: float = 5.0,
                 api_key: str = "", dt: float = 0.0, images_key: str = "images", image_keys: dict | None = None,
                 state_key: str = "state", prompt_key: str = "prompt", actions_key: str = "actions"):
        if not (timeout_s > 0 and connect_timeout_s > 0 and 0 < backoff_s <= max_backoff_s):
            raise ValueError("timeouts must be > 0 and 0 < backoff_s <= max_backoff_s")
        self.embodiment = embodiment
        self.io = EmbodimentIO(embodiment)
        self.url = url if "://" in url else f"ws://{url}"
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.api_key, self.dt = api_key, dt
        self.keys = {"images": images_key, "state": state_key, "prompt": prompt_key, "actions": actions_key}
        self.image_keys = dict(image_keys or {})
        self.ws: ClientConnection | None = None
        self.server: dict = {}
        self._wait = backoff_s
        self._next_attempt = 0.0
        self._state = f"not connected yet to {self.url}"

    @property
    def metadata(self) -> dict:
        if not self.server:
            return {**describe(self.embodiment, "remote", 0, self.dt), "url": self.url}
        return {**self.server, "url": self.url}

    @property
    def supports_prefix(self) -> bool:
        return bool(self.server.get("supports_prefix"))

    @property
    def state(self) -> str:
        return self._state

    def _connection(self) -> ClientConnection:
        if self.ws is not None:
            return self.ws
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise BackendUnavailable(f"{self._state}; next attempt in {wait:.1f} s")
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            # Entered like a context manager (websockets >= 17.1 warns otherwise); close() ends it.
            ws = connect(self.url, open_timeout=self.connect_timeout_s, compression=None, max_size=None,
                         additional_headers=headers, user_agent_header=f"vla_ros/{__version__}").__enter__()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
            self._lost(f"cannot connect to {self.url}: {error or type(error).__name__}")
            raise BackendUnavailable(self._state) from None
        try:
            metadata = wire.unpack(ws.recv(timeout=self.connect_timeout_s))
        except (TimeoutError, ConnectionClosed, PolicyError) as error:
            ws.close()
            self._lost(f"{self.url} sent no metadata on connect: {error or type(error).__name__}")
            raise BackendUnavailable(self._state) from None
        self.ws, self.server = ws, metadata if isinstance(metadata, dict) else {}
        self._wait = self.backoff_s
        self._state = f"connected to {self.url}"
        return ws

    def _lost(self, reason: str) -> None:
        if self.ws is not None:
            self.ws.close()
        self.ws = None
        self._state = f"disconnected: {reason}"
        self._next_attempt = time.monotonic() + self._wait
        self._wait = min(2 * self._wait, self.max_backoff_s)

    def _round_trip(self, message: dict):
        ws = self._connection()
        try:
            ws.send(wire.pack(message))
            reply = ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            self._lost(f"no reply from {self.url} within {self.timeout_s} s")
            raise BackendUnavailable(self._state) from None
        except (ConnectionClosed, OSError) as error:
            self._lost(f"connection to {self.url} lost: {error or type(error).__name__}")
            raise BackendUnavailable(self._state) from None
        if isinstance(reply, str):
            raise PolicyError(f"the policy server answered with an error: {reply.strip()}")
        return wire.unpack(reply)

    def _request(self, observation: Observation, prefix: np.ndarray | None) -> dict:
        images = {self.image_keys.get(name, name): image for name, image in observation.images.items()}
        request = {self.keys["images"]: images} if self.keys["images"] else dict(images)
        request[self.keys["state"]] = np.asarray(observation.state, dtype=np.float32)
        request[self.keys["prompt"]] = observation.instruction
        if prefix is not None and self.supports_prefix:
            request["prefix"] = np.asarray(prefix, dtype=np.float32)
        return request

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        self._connection()  # first: the request's form depends on the server's metadata
        reply = self._round_trip(self._request(observation, prefix))
        actions = reply.get(self.keys["actions"]) if isinstance(reply, dict) else None
        if not isinstance(actions, np.ndarray) or actions.ndim != 2:
            raise PolicyError(f"the server's reply has no {self.keys['actions']!r} array of shape (H, D): "
                              f"{sorted(reply) if isinstance(reply, dict) else type(reply).__name__}")
        if actions.shape[1] == self.io.layout.width and self.io.layout.width != self.io.size:
            actions = self.io.unpad(actions)
        if actions.shape[1] != self.io.size:
            raise PolicyError(f"the server returned actions of width {actions.shape[1]}; embodiment "
                              f"{self.embodiment.name} needs {self.io.size} or the padded {self.io.layout.width}")
        dt = float(reply.get("dt") or self.dt or self.server.get("dt") or 0.0)
        if not dt > 0:
            raise PolicyError("the server says nothing about the time between actions: set the 'dt' parameter")
        return ActionChunk(np.array(actions, dtype=np.float32), dt, observation.stamp)

    def reset(self) -> None:
        """A vla_ros server forgets this client's episode; with any other server, reconnect afresh."""
        if self.ws is not None and self.server.get("server") == "vla_ros":
            try:
                self._round_trip({"reset": True})
                return
            except BackendUnavailable:
                return  # the connection is gone already: the next one starts afresh
            except PolicyError:
                pass
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
