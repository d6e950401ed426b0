"""`remote`: a policy served over the openpi websocket protocol (a big VLA on a GPU machine).

The protocol (openpi's `serving/websocket_policy_server.py` and `openpi_client`): the client opens
a websocket; the server first sends its metadata (a msgpack map); then each binary message from
the client is an observation and each reply is a map with "actions" (H, D); a text reply is the
server's error message. Observations go out as {"images": {camera: HxWx3 uint8}, "state": (D,)
float32, "prompt": str} by default; `images_key`, `image_keys`, `image_size`, `channels_first`,
`state_key` / `state_keys`, `prompt_key` and `actions_key` adapt them to another server's form
(vla_ros.policy.openpi). `preset: droid | libero | aloha` sets all of them, the action space, dt,
the steps kept of each chunk and clipping as openpi's example clients do; any parameter given
as well overrides the preset's. The answer's action space is, first to last: the `action_space`
parameter, the preset's, the one a vla_ros server states in its metadata, `joint_position`.

Never blocks for long and never raises anything but PolicyError: a refused connection, a
timeout or a dropped link make `infer` raise BackendUnavailable, and the next attempt to connect
waits an exponentially growing backoff (reset by a success). A request that times out drops the
connection: its late reply would otherwise answer the next request. `api_key` goes out as the
header `Authorization: Api-Key KEY` (openpi's); a wss:// url speaks TLS, trusting the authority in
`ca_file` when one is given (a server's self-signed certificate).
"""
from __future__ import annotations

import copy
import ssl
import time
from dataclasses import replace

import numpy as np
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from vla_ros import __version__
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy import openpi, wire
from vla_ros.policy.interface import ActionChunk, ActionSpace, BackendUnavailable, Observation, Policy, PolicyError
from vla_ros.policy.openpi import RequestFormat, StateReader, build_request
from vla_ros.policy.registry import backend, describe


@backend("remote")
class RemotePolicy(Policy):
    """A policy served over the openpi websocket protocol, reconnected with exponential backoff."""

    def __init__(self, embodiment: Embodiment, url: str = "ws://localhost:8000", timeout_s: float = 2.0,
                 connect_timeout_s: float = 2.0, backoff_s: float = 0.25, max_backoff_s: float = 5.0,
                 api_key: str = "", ca_file: str = "", preset: str = "", dt: float = 0.0, steps: int = 0,
                 clip: float = 0.0,
                 images_key: str | None = None, image_keys: dict | None = None, image_size: list | None = None,
                 channels_first: bool | None = None, state_key: str | None = None, state_keys: dict | None = None,
                 prompt_key: str | None = None, actions_key: str = "actions", action_space: str | dict | None = None):
        if not (timeout_s > 0 and connect_timeout_s > 0 and 0 < backoff_s <= max_backoff_s):
            raise ValueError("timeouts must be > 0 and 0 < backoff_s <= max_backoff_s")
        if dt < 0 or steps < 0 or clip < 0:
            raise ValueError("dt, steps and clip must be >= 0")
        self.embodiment = embodiment
        self.io = EmbodimentIO(embodiment)
        self.url = url if "://" in url else f"ws://{url}"
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.api_key, self.preset = api_key, preset
        if ca_file and not self.url.startswith("wss://"):
            raise PolicyError(f"remote: ca_file is for a wss:// url (TLS), and the url is {self.url}")
        self.tls = self._tls(ca_file) if ca_file else None
        chosen = openpi.preset(preset, embodiment) if preset else None
        self.dt = dt or (chosen.dt if chosen else 0.0)
        self.steps = steps or (chosen.steps if chosen else 0)
        self.clip = clip or (chosen.clip if chosen else 0.0)
        form = chosen.request if chosen else RequestFormat()
        if state_key is not None:
            form = replace(form, state_keys={state_key: ()})
        given = {"images_key": images_key, "image_keys": image_keys, "channels_first": channels_first,
                 "state_keys": state_keys and {k: tuple(v) for k, v in state_keys.items()}, "prompt_key": prompt_key,
                 "image_size": tuple(image_size) if image_size else None}
        self.form = replace(form, **{k: v for k, v in given.items() if v is not None})
        self.actions_key = actions_key
        self.space = self._space(action_space, chosen.space if chosen else None)
        self.reader = StateReader(embodiment, (self.space or ActionSpace()).gripper)
        self.ws: ClientConnection | None = None
        self.server: dict = {}
        self._wait = backoff_s
        self._next_attempt = 0.0
        self._state = f"not connected yet to {self.url}"

    @staticmethod
    def _tls(ca_file: str) -> ssl.SSLContext:
        """TLS that trusts the certificate authority in `ca_file` (PEM): a server's own, no public one."""
        try:
            return ssl.create_default_context(cafile=ca_file)
        except OSError as error:  # ssl.SSLError too
            raise PolicyError(f"remote: cannot read ca_file {ca_file!r} as PEM certificates: {error}") from None

    @staticmethod
    def _space(given: str | dict | None, preset: ActionSpace | None) -> ActionSpace | None:
        """The `action_space` parameter (a name, or fields over the preset's), else the preset's, else None."""
        if isinstance(given, dict) and preset is not None:
            return ActionSpace.from_dict({**preset.to_dict(), **given})
        return ActionSpace.from_dict(given) if given is not None else preset

    @property
    def metadata(self) -> dict:
        """The server's metadata once connected (never raises: a bad stated space fails `infer`)."""
        if not self.server:
            return {**describe(self.embodiment, "remote", 0, self.dt, space=self.space), "url": self.url}
        given = {"action_space": self.space.to_dict()} if self.space is not None else {}
        return {**self.server, "url": self.url, **given}

    @property
    def answer_space(self) -> ActionSpace:
        """The space the server's chunks are read in (see the module docstring)."""
        if self.space is not None:
            return self.space
        stated = self.server.get("action_space")
        return ActionSpace.from_dict(stated) if stated else ActionSpace()

    @property
    def supports_prefix(self) -> bool:
        return bool(self.server.get("supports_prefix"))

    @property
    def state(self) -> str:
        return self._state

    def _connection(self) -> ClientConnection:
        if self.ws is not None and self.ws.state is State.OPEN:
            return self.ws
        if self.ws is not None:  # the server closed it cleanly (a vla_ros server after its idle timeout): reconnect
            self.ws.close()
            self.ws = None
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise BackendUnavailable(f"{self._state}; next attempt in {wait:.1f} s")
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            # Entered like a context manager (websockets >= 17.1 warns otherwise); close() ends it.
            ws = connect(self.url, open_timeout=self.connect_timeout_s, compression=None, max_size=None,
                         additional_headers=headers, user_agent_header=f"vla_ros/{__version__}",
                         **({"ssl": self.tls} if self.tls else {})).__enter__()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:  # ssl.SSLError is an OSError
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

    def connect(self) -> dict:
        """Connect now rather than at the first request; the server's metadata, or BackendUnavailable."""
        self._connection()
        return self.server

    def fork(self) -> RemotePolicy:
        """The same server, parameters and request form, on a connection of its own (opened when first used)."""
        twin = copy.copy(self)
        twin.ws, twin.server = None, {}
        twin._wait, twin._next_attempt = self.backoff_s, 0.0
        twin._state = f"not connected yet to {self.url}"
        return twin

    def _lost(self, reason: str) -> None:
        if self.ws is not None:
            self.ws.close()
        self.ws = None
        self._state = f"disconnected: {reason}"
        self._next_attempt = time.monotonic() + self._wait
        self._wait = min(2 * self._wait, self.max_backoff_s)

    def _round_trip(self, message: dict, again: bool = True):
        ws = self._connection()
        try:
            ws.send(wire.pack(message))
            reply = ws.recv(timeout=self.timeout_s)
        except ConnectionClosedOK:
            if not again:
                raise BackendUnavailable(f"{self.url} closed the connection at once, twice") from None
            ws.close()  # closed cleanly as the request went out (a server's idle timeout): once more, anew
            self.ws = None
            return self._round_trip(message, again=False)
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
        request = build_request(self.form, self.reader, observation)
        if self.server.get("server") == "vla_ros":
            request["stamp"] = observation.stamp  # a vla_ros server takes it; openpi's servers know no such key
        if prefix is not None and self.supports_prefix:
            request["prefix"] = np.asarray(prefix, dtype=np.float32)
        return request

    def infer(self, observation: Observation, prefix: np.ndarray | None = None) -> ActionChunk:
        self._connection()  # first: the answer's space depends on the server's metadata
        reply = self._round_trip(self._request(observation, prefix))
        actions = reply.get(self.actions_key) if isinstance(reply, dict) else None
        if not isinstance(actions, np.ndarray) or actions.ndim != 2:
            raise PolicyError(f"the server's reply has no {self.actions_key!r} array of shape (H, D): "
                              f"{sorted(reply) if isinstance(reply, dict) else type(reply).__name__}")
        space = self.answer_space
        padded = self.io.layout.width != self.io.size and actions.shape[1] == self.io.layout.width
        if space == ActionSpace() and padded:
            actions = self.io.unpad(actions)
        if self.steps:
            actions = actions[:self.steps]
        if self.clip:
            actions = np.clip(actions, -self.clip, self.clip)
        dt = float(self.dt or reply.get("dt") or self.server.get("dt") or 0.0)
        if not dt > 0:
            raise PolicyError("the server says nothing about the time between actions: set the 'dt' parameter")
        return ActionChunk(np.array(actions, dtype=np.float32), dt, observation.stamp, space)

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
