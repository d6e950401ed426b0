"""Serve any backend over the openpi websocket protocol (`vla-ros serve`, `policy_server`).

On connect the server sends its metadata: the backend's (vla_ros.policy.describe) plus "server":
"vla_ros", the protocol's observation spec, a ready-to-send `example_observation` and the server's
limits. Each binary message is then an observation (vla_ros.policy.observation.parse_observation)
answered with {"actions": (H, D) float32, "dt": s, "server_timing": {"infer_ms", "prev_total_ms"}},
or with a one-line text message saying what is wrong (a backend's traceback goes to the server's
log, never to a client); unlike openpi's server, a bad observation does not end the connection.
{"reset": true} makes the connection's episode start over. GET /healthz answers 200 "OK".

The model is loaded once; each connection gets a fork of it (`Policy.fork`) with an episode of its
own, so clients never share state; requests from different clients take turns on the model, as
openpi's server does. Made to face a network: it listens on 127.0.0.1 unless given
another host; with an API key it refuses (401) any client whose `Authorization: Api-Key` header
differs (a constant-time comparison; openpi's clients send that header); with a certificate and key
it speaks TLS (wss://); a message larger than `max_message_bytes` (by default derived from the
metadata: `message_limit`) closes that connection only (1009); past `max_connections` a client is
refused (503); a connection silent for `idle_timeout_s` is closed. `vla-ros serve` runs it on its
own; the `policy_server` node runs it beside ROS, reporting its counts on /diagnostics.
"""
from __future__ import annotations

import asyncio
import hmac
import http
import logging
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from vla_ros import __version__
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.errors import VlaRosError
from vla_ros.policy import wire
from vla_ros.policy.interface import Policy, PolicyError
from vla_ros.policy.observation import parse_observation
from vla_ros.policy.registry import make_policy
from vla_ros.stats import Window

EXAMPLE_PROMPT = "reach the red cube"
TIMING_WINDOW = 100  # requests in the inference-time percentiles
API_KEY_VARIABLE = "VLA_ROS_API_KEY"  # the key when no --api-key / api_key parameter gives one
IMAGE_SCALE = 4  # message_limit admits each camera's image at up to this many times its stated side
MESSAGE_MARGIN = 1 << 20  # [bytes] for the prompt, keys and framing

log = logging.getLogger("vla_ros.policy_server")


@dataclass(frozen=True)
class Limits:
    """What one server admits.

    Attributes:
        max_connections: clients served at once; the next is refused with 503.
        idle_timeout_s: [s] a connection that sends nothing for this long is closed.
        max_message_bytes: the largest message taken; a larger one closes its connection (0: `message_limit`).
    """

    max_connections: int = 8
    idle_timeout_s: float = 300.0
    max_message_bytes: int = 0

    def __post_init__(self):
        if self.max_connections < 1 or not self.idle_timeout_s > 0 or self.max_message_bytes < 0:
            raise VlaRosError(f"server limits need max_connections >= 1, idle_timeout_s > 0 and "
                              f"max_message_bytes >= 0, got {self.max_connections}, {self.idle_timeout_s} and "
                              f"{self.max_message_bytes}")


def message_limit(metadata: dict) -> int:
    """[bytes] the largest observation a server of `metadata` needs to take.

    Every camera's image at up to IMAGE_SCALE times its side (a client may send its camera's
    resolution: the server resizes), the state, a prefix as long as a chunk, and MESSAGE_MARGIN.
    """
    spec = metadata["observation"]
    images = sum(math.prod(image["shape"]) for image in spec["images"].values()) * IMAGE_SCALE ** 2
    state = 4 * spec["state"]["shape"][0] * (1 + int(metadata.get("chunk_length", 0)))
    return images + state + MESSAGE_MARGIN


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate (chain) and its private key; VlaRosError if unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as error:  # ssl.SSLError too
        raise VlaRosError(f"cannot use certificate {certfile!r} with key {keyfile!r}: {error}") from None
    return context


def server_metadata(policy: Policy, example_state: np.ndarray, example_prompt: str) -> dict:
    metadata = dict(policy.metadata)
    cameras = metadata["cameras"]
    size = len(metadata["state_names"])
    metadata.update({
        "server": "vla_ros",
        "version": __version__,
        "observation": {
            "images": {name: {"shape": shape, "dtype": "uint8"} for name, shape in cameras.items()},
            "state": {"shape": [size], "dtype": "float32", "names": metadata["state_names"]},
            "prompt": {"dtype": "str"},
            "stamp": {"dtype": "float64", "optional": True},
            "prefix": {"shape": ["K", size], "dtype": "float32", "optional": True},
        },
        "actions": {"shape": [metadata["chunk_length"], size], "dtype": "float32", "names": metadata["action_names"]},
        "example_observation": {
            "images": {name: np.zeros(shape, dtype=np.uint8) for name, shape in cameras.items()},
            "state": np.asarray(example_state, dtype=np.float32),
            "prompt": example_prompt,
        },
    })
    return metadata


class PolicyServer:
    """Serves forks of `policy` on host:port (port 0: any free one); see the module docstring.

    Attributes (read from any thread, for reports): connections open now, requests answered, errors
    (requests answered with an error message), refused (client -> count: unauthorized, full, oversized,
    idle), infer_s (a Window of answer times [s]).
    """

    def __init__(self, policy: Policy, metadata: dict, host: str = "127.0.0.1", port: int = 8000,
                 api_key: str = "", tls: ssl.SSLContext | None = None, limits: Limits = Limits()):
        self.policy = policy
        self.limits = limits
        self.max_message_bytes = limits.max_message_bytes or message_limit(metadata)
        self.metadata = {**metadata, "max_message_bytes": self.max_message_bytes,
                         "idle_timeout_s": limits.idle_timeout_s}
        self.host, self.port = host, port
        self.scheme = "wss" if tls is not None else "ws"
        self._expected = f"Api-Key {api_key}".encode() if api_key else None
        self._tls = tls
        self._packed_metadata = wire.pack(self.metadata)
        self.connections = self.requests = self.errors = 0
        self.refused = {"unauthorized": 0, "full": 0, "oversized": 0, "idle": 0}
        self.infer_s = Window(TIMING_WINDOW)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until `stop()` or cancelled, then close the policy; `ready(port)` is called once listening."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._inferring = asyncio.Lock()
        try:
            async with serve(self._handle, self.host, self.port, compression=None, max_size=self.max_message_bytes,
                             process_request=self._admit, ssl=self._tls) as server:
                port = server.sockets[0].getsockname()[1]
                log.info("serving %s for %s on %s://%s:%d", self.metadata["backend"], self.metadata["embodiment"],
                         self.scheme, self.host, port)
                if self._expected is None and self.host not in ("127.0.0.1", "localhost", "::1"):
                    log.warning("no API key: anyone who can reach %s:%d can drive the robot", self.host, port)
                if ready is not None:
                    ready(port)
                if not self._stop_requested:
                    await self._stop.wait()
        finally:
            self.policy.close()

    def stop(self) -> None:
        """Stop serving (from any thread): serve() returns."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _admit(self, connection: ServerConnection, request):
        """The handshake's gate: /healthz answers, a wrong key gets 401, a full server 503."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self._expected is not None:
            given = request.headers.get_all("Authorization")
            if len(given) != 1 or not hmac.compare_digest(given[0].encode(), self._expected):
                self.refused["unauthorized"] += 1
                log.warning("refused %s: missing or wrong API key", connection.remote_address)
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        if self.connections >= self.limits.max_connections:
            self.refused["full"] += 1
            log.warning("refused %s: %d connections already", connection.remote_address, self.connections)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"the server is full ({self.connections} connections)\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        if self.connections >= self.limits.max_connections:  # several admitted at once: refuse the extra ones
            self.refused["full"] += 1
            await ws.close(CloseCode.TRY_AGAIN_LATER, "the server is full")
            return
        log.info("connection from %s", ws.remote_address)
        policy = self.policy.fork()
        previous_total = None
        self.connections += 1
        try:
            await ws.send(self._packed_metadata)
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.limits.idle_timeout_s)
                except asyncio.TimeoutError:
                    self.refused["idle"] += 1
                    await ws.close(CloseCode.NORMAL_CLOSURE, f"idle for {self.limits.idle_timeout_s:g} s")
                    break
                start = time.monotonic()
                try:
                    reply = await self._answer(policy, message)
                except PolicyError as error:
                    self.errors += 1
                    await ws.send(" ".join(str(error).split()))
                    continue
                except Exception as error:
                    self.errors += 1
                    log.exception("the backend failed")
                    await ws.send(f"the policy backend failed ({type(error).__name__}); the server's log says why")
                    continue
                self.requests += 1
                self.infer_s.add(time.monotonic() - start)
                reply["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1e3}
                if previous_total is not None:
                    reply["server_timing"]["prev_total_ms"] = previous_total * 1e3
                await ws.send(wire.pack(reply))
                previous_total = time.monotonic() - start
        except ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.refused["oversized"] += 1
                log.warning("closed %s: a message over %d bytes", ws.remote_address, self.max_message_bytes)
        finally:
            self.connections -= 1
            policy.close()
            log.info("connection from %s closed", ws.remote_address)

    async def _answer(self, policy: Policy, message: bytes | str) -> dict:
        if isinstance(message, str):
            raise PolicyError("observations are binary msgpack messages, got text")
        try:
            request = wire.unpack(message)
            reset = isinstance(request, dict) and request.get("reset") is True and len(request) == 1
            observation, prefix = (None, None) if reset else parse_observation(request, self.metadata)
        except (TypeError, ValueError, OverflowError, KeyError, MemoryError) as error:  # numpy on hostile input
            raise PolicyError(f"not an observation ({type(error).__name__}: {error})") from None
        async with self._inferring:  # one model: its forks take turns (their shared parts need not be thread-safe)
            if reset:
                await asyncio.to_thread(policy.reset)
                return {"reset": True}
            chunk = await asyncio.to_thread(policy.infer, observation, prefix)
        return {"actions": np.asarray(chunk.actions, dtype=np.float32), "dt": chunk.dt}


def policy_server(backend: str, embodiment: Embodiment, params: dict, host: str = "127.0.0.1", port: int = 8000,
                  api_key: str = "", tls: ssl.SSLContext | None = None, limits: Limits = Limits()) -> PolicyServer:
    """A server of `backend` for `embodiment`.

    The model is loaded here, once, so a bad backend or parameter fails here (PolicyError), before
    anything listens.
    """
    policy = make_policy(backend, embodiment, params)
    metadata = server_metadata(policy, EmbodimentIO(embodiment).home, EXAMPLE_PROMPT)
    return PolicyServer(policy, metadata, host, port, api_key, tls, limits)
