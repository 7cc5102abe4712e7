"""Every error oss-edge reports, under one root, and the one table of exit codes they end a command with.

Errors carry a message written for the user; they become text only at a boundary (the CLI, an LSP handler, the
socket). The runtime's errors also carry a stable wire `code` (docs/protocol.md).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """How an `oss-edge` command ended (docs/architecture.md lists them; scripts use these names, not numbers)."""

    OK = 0
    FAILED = 1  # an error without a more specific code below
    USAGE = 2  # the command line: an unknown option or a combination that is not supported
    BAD_CHECKPOINT = 3  # the source is not a usable gpt-oss checkpoint
    SOURCE_UNAVAILABLE = 4  # the checkpoint cannot be fetched (offline, unknown id, no access)
    OUTPUT_EXISTS = 5  # the output folder already holds something (nothing was changed)
    DISK_FULL = 6
    VERIFICATION_FAILED = 7
    OUT_OF_MEMORY = 8  # refused before starting: the machine has too little memory
    BAD_MODEL_FOLDER = 9  # a model folder is missing, incomplete or cannot be loaded
    SOCKET_UNAVAILABLE = 10  # the daemon cannot listen where it was asked to
    DAEMON_UNAVAILABLE = 11  # no daemon answers, or it went away mid-request
    NO_MODEL = 12  # no model folder is configured or exported yet
    INTERNAL = 70  # a bug: the traceback is in a crash log
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; nothing partial was left behind


class OssEdgeError(Exception):
    """The root: a message for the user that says what to do, and the exit code it ends a command with."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


class UsageError(OssEdgeError):
    """An option or combination of options is not supported."""

    exit_code = ExitCode.USAGE


class NoModel(OssEdgeError):
    """No model folder is configured or exported yet."""

    exit_code = ExitCode.NO_MODEL


class RuntimeFault(OssEdgeError):
    """An error of the runtime daemon: `code` crosses the wire."""

    code = "internal"

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": str(self)}


class InvalidParams(RuntimeFault):
    code = "invalid_params"


class UnknownMethod(RuntimeFault):
    code = "unknown_method"


class ProtocolMismatch(RuntimeFault):
    code = "protocol_mismatch"


class Unauthorized(RuntimeFault):
    code = "unauthorized"


class PromptTooLong(RuntimeFault):
    code = "prompt_too_long"


class ModelFolderError(RuntimeFault):
    """The model folder is missing, incomplete or unreadable."""

    code = "model_folder"
    exit_code = ExitCode.BAD_MODEL_FOLDER


class ModelLoadError(RuntimeFault):
    code = "model_load"
    exit_code = ExitCode.BAD_MODEL_FOLDER


class SocketError(RuntimeFault):
    """The daemon cannot listen where it was asked to."""

    code = "socket"
    exit_code = ExitCode.SOCKET_UNAVAILABLE


class DaemonUnavailable(RuntimeFault):
    """Client side: no daemon answers, or it went away mid-request."""

    code = "daemon_unavailable"
    exit_code = ExitCode.DAEMON_UNAVAILABLE


class ShuttingDown(RuntimeFault):
    code = "shutting_down"
