"""The training data: the running interpreter's standard library sources, tests excluded, and a fixed hold-out.

The hold-out modules are published (docs/standin.md) and never seen in training: not by the tokenizer, not by
the model. A file whose content equals a held-out one is refused wherever it lies, so a copy cannot leak in.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError

# Paths relative to the standard library's folder. Chosen for variety (text, numbers, data structures, parsing,
# formatting) and because every CPython since 3.9 ships them.
HOLD_OUT = (
    "bisect.py",
    "calendar.py",
    "colorsys.py",
    "csv.py",
    "fnmatch.py",
    "fractions.py",
    "glob.py",
    "graphlib.py",
    "heapq.py",
    "json/encoder.py",
    "pprint.py",
    "shlex.py",
    "statistics.py",
    "textwrap.py",
)
# Folders that hold tests, bundled third-party code or generated data rather than the library's own code.
EXCLUDED_PARTS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "pydoc_data", "encodings"}
)
MAX_FILE_BYTES = 300_000  # larger files are generated tables, not code a user writes
MIN_SOURCE_FILES = 200  # a real standard library has about 700 modules outside its tests


class CorpusError(ExportError):
    """The standard library's sources are missing, or the hold-out is not held out."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the standard library, with forward slashes
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Corpus:
    root: Path
    train: tuple[SourceFile, ...]
    held_out: tuple[SourceFile, ...]

    @property
    def train_bytes(self) -> int:
        return sum(len(f.text.encode()) for f in self.train)

    def summary(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "python": ".".join(map(str, sys.version_info[:3])),
            "train_files": len(self.train),
            "train_bytes": self.train_bytes,
            "held_out": [f.path for f in self.held_out],
            "held_out_bytes": sum(len(f.text.encode()) for f in self.held_out),
        }


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _is_test(relative: Path) -> bool:
    return any(part in EXCLUDED_PARTS for part in relative.parts[:-1]) or relative.name.startswith("test_")


def load_corpus(root: Path | None = None) -> Corpus:
    """The training and held-out files under `root` (the running interpreter's standard library by default)."""
    root = Path(root) if root is not None else stdlib_root()
    files = sorted(p for p in root.rglob("*.py") if p.is_file()) if root.is_dir() else []
    sources = []
    for file in files:
        relative = file.relative_to(root)
        if _is_test(relative) or file.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            sources.append(SourceFile(relative.as_posix(), file.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # a file that is not UTF-8 text is not training data
    if len(sources) < MIN_SOURCE_FILES:
        raise CorpusError(
            f"the standard library's Python sources are missing: {root} holds {len(sources)} .py files outside "
            f"its tests, a full one about 700 (a minimal Python ships compiled modules only). Install the "
            f"sources (Debian: libpython{sys.version_info[0]}.{sys.version_info[1]}-stdlib; or use a python.org "
            "or pyenv build), or pass --stdlib with a folder that holds them"
        )
    by_path = {s.path: s for s in sources}
    missing = [path for path in HOLD_OUT if path not in by_path]
    if missing:
        raise CorpusError(f"{root} lacks the held-out modules {', '.join(missing)}: not a complete standard library")
    held_out = tuple(by_path[path] for path in HOLD_OUT)
    train = tuple(s for s in sources if s.path not in HOLD_OUT)
    check_hold_out(train, held_out)
    return Corpus(root, train, held_out)


def check_hold_out(train: tuple[SourceFile, ...], held_out: tuple[SourceFile, ...]) -> None:
    """A held-out module in the training set, by path or by content, is a hard error."""
    paths = {f.path for f in held_out}
    digests = {f.sha256: f.path for f in held_out}
    for source in train:
        if source.path in paths:
            raise CorpusError(f"the held-out module {source.path} is in the training set")
        if source.sha256 in digests:
            raise CorpusError(
                f"{source.path} in the training set is a copy of the held-out module {digests[source.sha256]}"
            )
