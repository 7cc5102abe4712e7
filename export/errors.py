"""Domain errors of the export pipeline; the CLI turns them into one-line messages and an exit code."""


class ExportError(Exception):
    """Base class: the message is written for the user and says what to do."""

    exit_code = 1


class CheckpointError(ExportError):
    """The source is not a usable gpt-oss checkpoint (wrong model, missing or truncated files, bad tokenizer)."""

    exit_code = 2


class SourceUnavailableError(ExportError):
    """The checkpoint cannot be fetched (offline, unknown hub id, no access)."""

    exit_code = 3


class OptionError(ExportError):
    """An option or combination of options is not supported."""

    exit_code = 4


class OutputExistsError(ExportError):
    """The output folder already holds something and --force was not given."""

    exit_code = 5


class DiskFullError(ExportError):
    """The disk filled up while writing; nothing was left behind."""

    exit_code = 6


class OutOfMemoryError(ExportError):
    """The machine has too little memory for the conversion; refused before starting."""

    exit_code = 8


class VerificationError(ExportError):
    """A model folder failed verification."""

    exit_code = 7
