"""Where oss-edge keeps its files: one user folder, overridable with OSS_EDGE_HOME (tests point it at a temp dir)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_path, user_state_path


def home() -> Path | None:
    value = os.environ.get("OSS_EDGE_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    root = home()
    return root / "data" if root else user_data_path("oss-edge", appauthor=False)


def state_dir() -> Path:
    root = home()
    return root / "state" if root else user_state_path("oss-edge", appauthor=False)


def models_dir() -> Path:
    return data_dir() / "models"


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
