"""`vla-ros serve --backend NAME`: a policy backend behind the openpi websocket protocol.

Any openpi client (`openpi_client.websocket_client_policy.WebsocketClientPolicy`) or our `remote`
backend can then drive a robot with it: the big model on a GPU machine, the controller local.
"""
from __future__ import annotations

import argparse
import asyncio
import logging


def register(verbs) -> None:
    summary = "serve a policy backend over the openpi websocket protocol"
    parser = verbs.add_parser("serve", help=summary, description=summary + " (GET /healthz answers 200)")
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="hold", help="policy backend: hold, replay, remote, ... (default hold)")
    parser.add_argument("--embodiment", default="arm7", help="embodiment name or file (default arm7)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a backend parameter (repeatable), e.g. --param path=chunks.npz")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000, openpi's; 0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    from vla_ros.embodiment import load_embodiment
    from vla_ros.policy import parse_params
    from vla_ros.policy.server import policy_server

    logging.basicConfig(level=logging.INFO, format="[policy_server] %(message)s")
    server = policy_server(args.backend, load_embodiment(args.embodiment), parse_params(pairs=args.param),
                           args.host, args.port)
    asyncio.run(server.serve(ready=lambda port: print(f"listening on ws://{args.host}:{port}", flush=True)))
    return 0
