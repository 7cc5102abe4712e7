"""The `oss-edge` command, composed once: each part registers its own verbs, the benchmarks theirs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge_runtime import __version__
from edge_runtime import commands as runtime_commands
from edge_runtime.boundary import run_command
from export import cli as export_commands
from lsp_server import cli as lsp_commands
from oss_edge.bench import cli as bench_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oss-edge",
        description="Offline code completion and explanation from gpt-oss, for any LSP editor.",
    )
    parser.add_argument("--version", action="version", version=f"oss-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    export_commands.register(subparsers)
    runtime_commands.register(subparsers)
    lsp_commands.register(subparsers)
    bench_commands.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
