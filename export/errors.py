"""Domain errors of the export pipeline, under oss-edge's one error root; the CLI turns them into one line."""

from edge_runtime.errors import ExitCode, OssEdgeError, UsageError


class ExportError(OssEdgeError):
    """The message is written for the user and says what to do."""


class CheckpointError(ExportError):
    """The source is not a usable gpt-oss checkpoint (wrong model, missing or truncated files, bad tokenizer)."""

    exit_code = ExitCode.BAD_CHECKPOINT


class SourceUnavailableError(ExportError):
    """The checkpoint cannot be fetched (offline, unknown hub id, no access)."""

    exit_code = ExitCode.SOURCE_UNAVAILABLE


class OptionError(ExportError, UsageError):
    """An option or combination of options is not supported."""


class OutputExistsError(ExportError):
    """The output folder already holds something and --force was not given."""

    exit_code = ExitCode.OUTPUT_EXISTS


class DiskFullError(ExportError):
    """The disk filled up while writing; nothing was left behind."""

    exit_code = ExitCode.DISK_FULL


class OutOfMemoryError(ExportError):
    """The machine has too little memory for the conversion; refused before starting."""

    exit_code = ExitCode.OUT_OF_MEMORY


class VerificationError(ExportError):
    """A model folder failed verification."""

    exit_code = ExitCode.VERIFICATION_FAILED
