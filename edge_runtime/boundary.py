"""The command-line boundary: run the chosen command; oss-edge's errors become one line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from edge_runtime import __version__
from edge_runtime.errors import ExitCode, OssEdgeError
from edge_runtime.paths import logs_dir


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Run the handler the parsed command names; domain errors become `oss-edge: message`, anything else a crash log."""
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("oss-edge: interrupted; nothing partial was left behind", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Exit now: an interrupt left pending inside torch's extensions can otherwise resurface at interpreter
        # shutdown and end the process by SIGINT instead of exit status 130.
        os._exit(ExitCode.INTERRUPTED)
    except OssEdgeError as exc:
        print(f"oss-edge: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`oss-edge doctor | head`): not a bug; stop writing, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED
    except Exception as exc:  # a bug: one line for the user, the traceback in a log
        log = logs_dir() / f"crash-{datetime.now():%Y%m%d-%H%M%S}.log"
        log.write_text(traceback.format_exc())
        print(f"oss-edge: internal error: {exc.__class__.__name__}: {exc} (traceback in {log})", file=sys.stderr)
        return ExitCode.INTERNAL


def run_verbs(description: str, *registers: Callable[[Any], None], argv: Sequence[str] | None = None) -> int:
    """An `oss-edge` parser holding the verbs each `register` adds, run through the boundary."""
    parser = argparse.ArgumentParser(prog="oss-edge", description=description)
    parser.add_argument("--version", action="version", version=f"oss-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in registers:
        register(subparsers)
    return run_command(parser, argv)
