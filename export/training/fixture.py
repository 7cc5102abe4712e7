"""The committed stand-in checkpoint (models/stand-in), made by `oss-edge train models/stand-in` with its defaults."""

from __future__ import annotations

import hashlib
from pathlib import Path

from export.errors import CheckpointError

STAND_IN_DIR = Path(__file__).resolve().parents[2] / "models" / "stand-in"
SUMS_FILE = "SHA256SUMS"


def stand_in_checkpoint() -> Path:
    """The committed stand-in's folder, checked against its SHA256SUMS."""
    folder = STAND_IN_DIR
    if not (folder / SUMS_FILE).is_file():
        raise CheckpointError(
            f"the stand-in checkpoint is not at {folder} (it comes with a source checkout of oss-edge); "
            "train one with `oss-edge train FOLDER`"
        )
    for line in (folder / SUMS_FILE).read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        file = folder / name.lstrip("*")
        if not file.is_file() or file_sha256(file) != digest:
            raise CheckpointError(f"{file} is missing or differs from {folder / SUMS_FILE}: restore it with git")
    return folder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sums(folder: Path) -> None:
    """SHA256SUMS for every file of a checkpoint folder (sha256sum -c reads it)."""
    lines = [f"{file_sha256(f)}  {f.name}" for f in sorted(folder.iterdir()) if f.is_file() and f.name != SUMS_FILE]
    (folder / SUMS_FILE).write_text("\n".join(lines) + "\n")
