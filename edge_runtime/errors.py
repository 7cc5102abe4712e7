"""Domain errors of the runtime. Each has a stable wire code; they become messages only at a boundary."""

from __future__ import annotations


class RuntimeFault(Exception):
    """Base class: `code` crosses the wire, `exit_code` ends `oss-edge serve`."""

    code = "internal"
    exit_code = 1

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
    exit_code = 2


class ModelLoadError(RuntimeFault):
    code = "model_load"
    exit_code = 2


class SocketError(RuntimeFault):
    """The daemon cannot listen where it was asked to."""

    code = "socket"
    exit_code = 3


class DaemonUnavailable(RuntimeFault):
    """Client side: no daemon answers, or it went away mid-request."""

    code = "daemon_unavailable"
    exit_code = 4


class ShuttingDown(RuntimeFault):
    code = "shutting_down"
