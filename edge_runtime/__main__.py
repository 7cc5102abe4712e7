"""`python -m edge_runtime serve|status|stop`: the runtime's own verbs, which a client uses to start the daemon."""

from __future__ import annotations

import argparse
import sys

from edge_runtime import __version__
from edge_runtime.boundary import run_command
from edge_runtime.commands import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="oss-edge", description="The oss-edge runtime daemon and its controls.")
    parser.add_argument("--version", action="version", version=f"oss-edge {__version__}")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run_command(parser)


if __name__ == "__main__":
    sys.exit(main())
