"""The `oss-edge` command: one entry point whose subcommands live with the part that owns them."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime

from edge_runtime import __version__
from edge_runtime.paths import logs_dir


def build_parser() -> argparse.ArgumentParser:
    from edge_runtime.commands import register as register_runtime  # noqa: PLC0415
    from edge_runtime.commands import register_bench as register_runtime_bench  # noqa: PLC0415
    from export.cli import register as register_export  # noqa: PLC0415  (argparse only; heavy imports are lazy)
    from export.cli import register_bench  # noqa: PLC0415
    from lsp_server.cli import register as register_lsp  # noqa: PLC0415
    from lsp_server.cli import register_bench as register_lsp_bench  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="oss-edge",
        description="Offline code completion and explanation from gpt-oss, for any LSP editor.",
    )
    parser.add_argument("--version", action="version", version=f"oss-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_export(subparsers)
    register_runtime(subparsers)
    register_lsp(subparsers)
    bench_targets = register_bench(subparsers)
    register_runtime_bench(bench_targets)
    register_lsp_bench(bench_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("oss-edge: interrupted; nothing partial was left behind", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Exit now: an interrupt left pending inside torch's extensions can otherwise resurface at interpreter
        # shutdown and end the process by SIGINT instead of exit status 130.
        os._exit(130)
    except Exception as exc:  # the boundary: domain errors become one line, anything else a line and a log
        from edge_runtime.errors import RuntimeFault  # noqa: PLC0415
        from export.errors import ExportError  # noqa: PLC0415

        if isinstance(exc, (ExportError, RuntimeFault)):
            print(f"oss-edge: {exc}", file=sys.stderr)
            return exc.exit_code
        log = logs_dir() / f"crash-{datetime.now():%Y%m%d-%H%M%S}.log"
        log.write_text(traceback.format_exc())
        print(f"oss-edge: internal error: {exc.__class__.__name__}: {exc} (traceback in {log})", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
