"""`oss-edge lsp`: the language server on stdio (what editors start), or on TCP for debugging."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


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


def _lsp(args: argparse.Namespace) -> int:
    from lsp_server.server import SERVER  # noqa: PLC0415

    logging.basicConfig(stream=sys.stderr, level=args.log_level, format="%(asctime)s %(name)s: %(message)s")
    if args.tcp is not None:
        SERVER.start_tcp("127.0.0.1", args.tcp)
    else:
        SERVER.start_io()
    return 0
