"""`python -m lsp_server lsp|demo`: the language server's own verbs, the same as `oss-edge lsp` and `oss-edge demo`."""

from __future__ import annotations

import argparse
import sys

from edge_runtime import __version__
from edge_runtime.boundary import run_command
from lsp_server.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="oss-edge", description="The oss-edge language server.")
    parser.add_argument("--version", action="version", version=f"oss-edge {__version__}")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run_command(parser)


if __name__ == "__main__":
    sys.exit(main())
