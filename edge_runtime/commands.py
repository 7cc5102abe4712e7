"""Command-line verbs of the runtime: `serve`, `status`, `doctor`, `stop`."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from edge_runtime.engine import DEFAULT_MAX_LENGTH, KERNELS, PROVIDERS


def register(subparsers: Any) -> None:
    _register_serve(subparsers)
    _register_queries(subparsers)


def _register_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the resident daemon for a model folder (one per user and model)",
        description="Load a model folder once and serve completions and explanations over msgpack-RPC on a "
        "user-private Unix socket (docs/protocol.md). A second serve for the same socket finds the first and "
        "exits with status 0.",
    )
    serve.add_argument("--model", type=Path, required=True, help="a folder made by `oss-edge export`")
    _socket_option(serve)
    serve.add_argument(
        "--tcp",
        type=int,
        metavar="PORT",
        help="also listen on 127.0.0.1:PORT (0 picks a port); clients must send the token written beside the socket",
    )
    serve.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help=f"context limit in tokens; the KV cache of each slot is allocated for it (default {DEFAULT_MAX_LENGTH})",
    )
    serve.add_argument("--threads", type=int, default=0, help="intra-op threads (default: physical cores)")
    serve.add_argument(
        "--slots", type=int, default=2, help="KV-cache slots kept between requests (default 2: completions + explain)"
    )
    serve.add_argument(
        "--chunk-tokens",
        type=int,
        default=0,
        help="prompt tokens per forward pass (default 0: sized to about 0.25 s, the longest a cancel waits)",
    )
    serve.add_argument("--provider", choices=PROVIDERS, help="override the model folder's provider")
    serve.add_argument(
        "--kernels",
        choices=KERNELS,
        default="auto",
        help="CPU expert kernels: fast (int8 activations, the most resident memory), compact (fp32 activations, "
        "the weights' scales memory-mapped: less memory, slower decode and prefill), auto (default: fast when the "
        "available memory allows it); docs/bench/runtime.md has the figures",
    )
    serve.add_argument(
        "--idle-exit",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="exit after this long without any client (default 900; 0 never)",
    )
    serve.add_argument(
        "--seed",
        type=int,
        help="sample requests that carry no seed reproducibly: the seed is derived from this and the prompt "
        "(for benchmarks; default: a fresh seed per request)",
    )
    serve.set_defaults(handler=_serve)


def _register_queries(subparsers: Any) -> None:
    """The verbs that ask about (or stop) a daemon rather than run one."""
    status = subparsers.add_parser("status", help="show what the daemon serving a model is doing")
    status.add_argument("--model", type=Path, help="the model folder the daemon serves")
    _socket_option(status)
    status.set_defaults(handler=_status)

    doctor = subparsers.add_parser(
        "doctor",
        help="which model the language server would serve, and whether its daemon runs",
        description="Say which model folder `oss-edge lsp` would serve (the one given, else the newest export), "
        "whether it is a usable model folder, and whether a daemon serves it now. Exits NO_MODEL or "
        "BAD_MODEL_FOLDER (docs/architecture.md) when the editors would have no model.",
    )
    doctor.add_argument("--model", type=Path, help="the model folder the editor is configured with (ossEdge.modelDir)")
    _socket_option(doctor)
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(handler=_doctor)

    stop = subparsers.add_parser("stop", help="stop the daemon serving a model")
    stop.add_argument("--model", type=Path, help="the model folder the daemon serves")
    _socket_option(stop)
    stop.set_defaults(handler=_stop)


def _socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket", type=Path, help="Unix socket path (default: derived from the model folder, in the runtime folder)"
    )


def _socket_for(args: argparse.Namespace) -> Path:
    from edge_runtime.paths import default_socket

    if args.socket:
        return Path(args.socket)
    if not args.model:
        raise SystemExit("oss-edge: pass --model DIR or --socket PATH")
    return default_socket(args.model)


def _serve(args: argparse.Namespace) -> int:
    from edge_runtime.server import ServeOptions, serve

    options = ServeOptions(
        socket=_socket_for(args),
        tcp_port=args.tcp,
        max_length=args.max_length,
        threads=args.threads,
        slots=args.slots,
        provider=args.provider,
        idle_exit_s=args.idle_exit,
        chunk_tokens=args.chunk_tokens,
        kernels=args.kernels,
        seed=args.seed,
    )
    return serve(args.model, options)


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(_ask(_socket_for(args), "status")), indent=2))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from edge_runtime import doctor

    report = doctor.diagnose(args.model, args.socket)
    print(json.dumps(report, indent=2) if args.json else doctor.render(report))
    return int(doctor.exit_code(report))


def _stop(args: argparse.Namespace) -> int:
    asyncio.run(_ask(_socket_for(args), "shutdown"))
    print("oss-edge: the daemon is stopping")
    return 0


async def _ask(socket: Path, method: str) -> Any:
    from edge_runtime.client import connect

    client = await connect(socket, client="oss-edge cli")
    try:
        return await client.call(method, timeout=30)
    finally:
        await client.close()
