"""Serve any backend over the openpi websocket protocol (`vla-ros serve`, `policy_server`).

On connect the server sends its metadata: the backend's (vla_ros.policy.describe) plus "server":
"vla_ros", the protocol's observation spec and a ready-to-send `example_observation`. Each binary
message is then an observation (vla_ros.policy.observation.parse_observation) answered with
{"actions": (H, D) float32, "dt": s, "server_timing": {"infer_ms", "prev_total_ms"}}, or with a
text message saying what is wrong; unlike openpi's server, a bad observation does not end the
connection. {"reset": true} makes the connection's policy forget its episode. Every connection
has its own policy instance, so clients never share state. GET /healthz answers 200 "OK".
`vla-ros serve` runs it on its own; the `policy_server` node runs it beside ROS, reporting the
counts it keeps (connections, requests, errors, inference time) on /diagnostics.
"""
from __future__ import annotations

import asyncio
import http
import logging
import time
import traceback
from collections.abc import Callable

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from vla_ros import __version__
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.policy import wire
from vla_ros.policy.interface import Policy, PolicyError
from vla_ros.policy.observation import parse_observation
from vla_ros.policy.registry import make_policy
from vla_ros.stats import Window

EXAMPLE_PROMPT = "reach the red cube"
TIMING_WINDOW = 100  # requests in the inference-time percentiles

log = logging.getLogger("vla_ros.policy_server")


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
    """Serves policies from `make_policy` (one per connection) on host:port (port 0: any free one).

    Attributes (read from any thread, for reports): connections open now, requests answered,
    errors (requests answered with an error message), infer_s (a Window of answer times [s]).
    """

    def __init__(self, make_policy: Callable[[], Policy], metadata: dict, host: str = "0.0.0.0", port: int = 8000):
        self.make_policy = make_policy
        self.metadata = metadata
        self.host, self.port = host, port
        self._packed_metadata = wire.pack(metadata)
        self.connections = self.requests = self.errors = 0
        self.infer_s = Window(TIMING_WINDOW)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until `stop()` or cancelled; `ready(port)` is called once listening."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._handle, self.host, self.port, compression=None, max_size=None,
                         process_request=_health_check) as server:
            port = server.sockets[0].getsockname()[1]
            log.info("serving %s for %s on ws://%s:%d", self.metadata["backend"], self.metadata["embodiment"],
                     self.host, port)
            if ready is not None:
                ready(port)
            if not self._stop_requested:
                await self._stop.wait()

    def stop(self) -> None:
        """Stop serving (from any thread): serve() returns."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _handle(self, ws: ServerConnection) -> None:
        log.info("connection from %s", ws.remote_address)
        policy = await asyncio.to_thread(self.make_policy)
        previous_total = None
        self.connections += 1
        try:
            await ws.send(self._packed_metadata)
            async for message in ws:
                start = time.monotonic()
                try:
                    reply = await self._answer(policy, message)
                except PolicyError as error:
                    self.errors += 1
                    await ws.send(str(error))
                    continue
                except Exception:
                    self.errors += 1
                    log.exception("the backend failed")
                    await ws.send(f"the policy backend failed:\n{traceback.format_exc()}")
                    continue
                self.requests += 1
                self.infer_s.add(time.monotonic() - start)
                reply["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1e3}
                if previous_total is not None:
                    reply["server_timing"]["prev_total_ms"] = previous_total * 1e3
                await ws.send(wire.pack(reply))
                previous_total = time.monotonic() - start
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1
            policy.close()
            log.info("connection from %s closed", ws.remote_address)

    async def _answer(self, policy: Policy, message: bytes | str) -> dict:
        if isinstance(message, str):
            raise PolicyError("observations are binary msgpack messages, got text")
        request = wire.unpack(message)
        if isinstance(request, dict) and request.get("reset") is True and len(request) == 1:
            await asyncio.to_thread(policy.reset)
            return {"reset": True}
        observation, prefix = parse_observation(request, self.metadata)
        chunk = await asyncio.to_thread(policy.infer, observation, prefix)
        return {"actions": np.asarray(chunk.actions, dtype=np.float32), "dt": chunk.dt}


def _health_check(connection: ServerConnection, request):
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


def policy_server(backend: str, embodiment: Embodiment, params: dict, host: str, port: int) -> PolicyServer:
    """A server of `backend` for `embodiment`.

    A first policy is built at once, so a bad backend or parameter fails here (PolicyError), before
    anything listens.
    """

    def policy() -> Policy:
        return make_policy(backend, embodiment, params)

    first = policy()
    metadata = server_metadata(first, EmbodimentIO(embodiment).home, EXAMPLE_PROMPT)
    first.close()
    return PolicyServer(policy, metadata, host, port)
