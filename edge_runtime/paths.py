"""Where oss-edge keeps its files: one user folder, overridable with OSS_EDGE_HOME (tests point it at a temp dir)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import warnings
from pathlib import Path

from platformdirs import user_cache_path, user_data_path, user_runtime_path, user_state_path


def home() -> Path | None:
    value = os.environ.get("OSS_EDGE_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    root = home()
    return root / "data" if root else user_data_path("oss-edge", appauthor=False)


def state_dir() -> Path:
    root = home()
    return root / "state" if root else user_state_path("oss-edge", appauthor=False)


def cache_dir() -> Path:
    """Results that can be computed again (reference logits for parity)."""
    root = home()
    return root / "cache" if root else user_cache_path("oss-edge", appauthor=False)


def models_dir() -> Path:
    return data_dir() / "models"


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runtime_dir() -> Path:
    """A folder only this user can enter, for sockets and lock files."""
    root = home()
    if root:
        path = root / "run"
    else:
        with warnings.catch_warnings():
            # without XDG_RUNTIME_DIR (containers, su) platformdirs falls back to /tmp/runtime-UID with a warning
            # on every call; the fallback is fine: the folder is made private and its owner checked below
            warnings.simplefilter("ignore")
            path = user_runtime_path("oss-edge", appauthor=False)
        if not os.access(_existing_parent(path), os.W_OK):
            path = Path(tempfile.gettempdir()) / f"oss-edge-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user; set OSS_EDGE_HOME or pass --socket")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def unsafe_folder(path: Path) -> str | None:
    """Why `path` must not hold this user's socket, or None: a symlink (it can be pointed elsewhere later), a
    folder of another user, or one that others can write to (they could swap the socket for their own)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None  # made private on creation
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link; give the socket a real folder"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"{path} can be written by others (mode {stat.filemode(info.st_mode)}); chmod go-w it or choose another"
    return None


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def model_key(model_dir: Path) -> str:
    """A short stable name for a model folder: its daemon's socket and log are named after it."""
    return hashlib.sha256(str(Path(model_dir).expanduser().resolve()).encode()).hexdigest()[:12]


def default_socket(model_dir: Path) -> Path:
    return runtime_dir() / f"{model_key(model_dir)}.sock"


DEFAULT_MODEL_ID = "openai/gpt-oss-20b"
# The presets a plain `oss-edge export` can take (its `auto` chooses one), and "int4", earlier versions' name.
DEFAULT_EXPORT_PRESETS = ("balanced", "fast", "int4")


def export_folder(source: str, variant: str, provider: str) -> Path:
    """The folder `oss-edge export` makes when --out is not given: source name, what was built, provider."""
    return models_dir() / f"{Path(source.rstrip('/')).name or 'model'}-{variant}-{provider}"


def default_model_folder() -> Path | None:
    """The model folder served when none is configured: the newest default export, else the newest export."""
    root = models_dir()
    candidates = [p for p in root.glob("*") if (p / "manifest.json").is_file()] if root.is_dir() else []
    defaults = {export_folder(DEFAULT_MODEL_ID, preset, "cpu").name for preset in DEFAULT_EXPORT_PRESETS}
    preferred = [p for p in candidates if p.name in defaults]
    return max(preferred or candidates, key=lambda p: p.stat().st_mtime, default=None)
