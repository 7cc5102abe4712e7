"""`oss-edge lsp`: the language server on stdio (what editors start), or on TCP for debugging."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edge_runtime.protocol import REASONING_EFFORTS


def register(subparsers: Any) -> None:
    lsp = subparsers.add_parser(
        "lsp",
        help="the language server editors start (stdio)",
        description="Serve LSP on stdin/stdout: inline completion, completion and explain-selection from the model "
        "folder in the initializationOptions (modelDir) or the one `oss-edge export` made. Starts the runtime "
        "daemon on demand. Logs go to stderr.",
    )
    lsp.add_argument("--tcp", metavar="PORT", type=int, help="listen on 127.0.0.1:PORT instead of stdio (debugging)")
    lsp.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    lsp.set_defaults(handler=_lsp)

    demo = subparsers.add_parser(
        "demo",
        help="type a sample file through the language server and print suggestions, an explanation and timings",
        description="Start `oss-edge lsp` as an editor would, let it start the model, type a sample file line by "
        "line asking for an inline suggestion at the end of each line, open it again as a second file and rest the "
        "cursor there (the model reads it in the background; the first suggestion there comes from the cache), "
        "stream one explanation, and print the "
        "latencies and how much of each prompt came from the KV cache. The model stays loaded afterwards.",
    )
    demo.add_argument("--model", type=Path, help="model folder (default: the one `oss-edge export` made)")
    demo.add_argument("--file", type=Path, help="a source file to type instead of the built-in sample")
    demo.add_argument("--language", default="python", help="its language id (default python)")
    demo.add_argument("--reasoning", choices=REASONING_EFFORTS, default="low")
    demo.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for the model to load")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from lsp_server.demo import run_demo

    return run_demo(args.model, args.file, args.language, args.reasoning, args.ready_timeout)


def _lsp(args: argparse.Namespace) -> int:
    from lsp_server.server import SERVER

    logging.basicConfig(stream=sys.stderr, level=args.log_level, format="%(asctime)s %(name)s: %(message)s")
    if args.tcp is not None:
        SERVER.start_tcp("127.0.0.1", args.tcp)
    else:
        SERVER.start_io()
    return 0
