"""`vla-ros serve --backend NAME`: a policy backend behind the openpi websocket protocol.

Any openpi client (`openpi_client.websocket_client_policy.WebsocketClientPolicy`) or our `remote`
backend can then drive a robot with it: the big model on a GPU machine, the controller local.
It listens on this machine only unless `--host` says otherwise; facing a network, give it an API
key and a certificate (vla_ros.policy.server).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os


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
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000, openpi's; 0 picks a free one)")
    parser.add_argument("--api-key", default=None,
                        help="refuse clients without the header 'Authorization: Api-Key KEY' (default: the "
                             "VLA_ROS_API_KEY variable; none: no key asked)")
    parser.add_argument("--certfile", default="", help="PEM certificate (chain): serve wss:// (TLS); needs --keyfile")
    parser.add_argument("--keyfile", default="", help="the certificate's PEM private key")
    parser.add_argument("--max-connections", type=int, default=8, help="clients at once (default 8)")
    parser.add_argument("--idle-timeout-s", type=float, default=300.0,
                        help="close a connection silent this long (default 300 s)")
    parser.add_argument("--max-message-mb", type=float, default=0.0,
                        help="the largest message taken [MB] (default 0: from the metadata, images up to 4x "
                             "their stated side)")


def run(args: argparse.Namespace) -> int:
    from vla_ros.embodiment import load_embodiment
    from vla_ros.errors import VlaRosError
    from vla_ros.policy import parse_params
    from vla_ros.policy.server import API_KEY_VARIABLE, Limits, policy_server, tls_context

    if bool(args.certfile) != bool(args.keyfile):
        raise VlaRosError("TLS needs both --certfile and --keyfile")
    tls = tls_context(args.certfile, args.keyfile) if args.certfile else None
    limits = Limits(args.max_connections, args.idle_timeout_s, round(args.max_message_mb * 1e6))
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE, "")
    logging.basicConfig(level=logging.INFO, format="[policy_server] %(message)s")
    server = policy_server(args.backend, load_embodiment(args.embodiment), parse_params(pairs=args.param),
                           args.host, args.port, api_key, tls, limits)
    asyncio.run(server.serve(
        ready=lambda port: print(f"listening on {server.scheme}://{args.host}:{port}", flush=True)))
    return 0
