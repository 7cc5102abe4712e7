"""The server's settings: initializationOptions and workspace/didChangeConfiguration, camelCase on the wire.

Invalid values fall back to their defaults; `parse_settings` returns the problems so that the server can say what
was wrong in one message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.protocol import REASONING_EFFORTS

MULTILINE_POLICIES = ("auto", "always", "never")


@dataclass(kw_only=True)
class Settings:
    model_dir: str = ""
    runtime_socket: str = ""
    runtime_idle_exit: int = 900
    max_tokens: int = 96
    time_budget_ms: int = 2000
    multiline: str = "auto"
    debounce_ms: int = 80
    context_tokens: int = 1536
    suffix_percent: int = 25
    neighbour_chunks: int = 4
    chunk_lines: int = 32
    max_alternatives: int = 3
    languages: list[str] = field(default_factory=lambda: ["*"])
    explain_effort: str = "medium"
    explain_max_tokens: int = 1024
    warm_on_rest_ms: int = 500  # editors send ossEdge/warm after the cursor rests this long; 0: no warming

    @property
    def prefix_tokens(self) -> int:
        return self.context_tokens * (100 - self.suffix_percent) // 100

    @property
    def suffix_tokens(self) -> int:
        return self.context_tokens * self.suffix_percent // 100

    def enabled_for(self, language: str) -> bool:
        return "*" in self.languages or language in self.languages


LIMITS: dict[str, tuple[int, int]] = {
    "runtime_idle_exit": (0, 86400),
    "max_tokens": (1, 1024),
    "time_budget_ms": (100, 60000),
    "debounce_ms": (0, 2000),
    "context_tokens": (64, 32768),
    "suffix_percent": (0, 90),
    "neighbour_chunks": (0, 8),
    "chunk_lines": (4, 200),
    "max_alternatives": (1, 5),
    "explain_max_tokens": (16, 8192),
    "warm_on_rest_ms": (0, 10000),
}
CHOICES = {"multiline": MULTILINE_POLICIES, "explain_effort": REASONING_EFFORTS}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def setting_names() -> list[str]:
    """The camelCase names clients send (editor settings mirror them)."""
    return [camel(f.name) for f in dataclasses.fields(Settings)]


# Settings an editor keeps for itself under the same section (how to start the server, the LSP trace): an editor that
# sends its whole section sends them too, and they are no concern of the server's.
CLIENT_SETTINGS = frozenset({"serverPath", "serverArgs", "trace"})


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client's map (optionally nested under "ossEdge"), and a list of what was ignored and why."""
    settings = dataclasses.replace(base) if base else Settings()
    problems: list[str] = []
    if raw is None:
        return settings, problems
    if isinstance(raw, dict) and isinstance(raw.get("ossEdge"), dict):
        raw = raw["ossEdge"]
    if not isinstance(raw, dict):
        return settings, [f"settings must be an object, not {type(raw).__name__}"]
    known = {camel(f.name): f for f in dataclasses.fields(Settings)}
    for key, value in raw.items():
        spec = known.get(key)
        if spec is None and key in CLIENT_SETTINGS:
            continue
        if spec is None:
            problems.append(f"unknown setting {key!r}")
            continue
        error = _check(spec.name, value)
        if error:
            problems.append(f"{key}: {error}; using {getattr(Settings(), spec.name)!r}")
            setattr(settings, spec.name, getattr(Settings(), spec.name))
        else:
            setattr(settings, spec.name, list(value) if isinstance(value, list) else value)
    return settings, problems


def _check(name: str, value: Any) -> str | None:
    default = getattr(Settings(), name)
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected a whole number, got {value!r}"
        low, high = LIMITS[name]
        if not low <= value <= high:
            return f"{value} is outside {low}..{high}"
        return None
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return f"expected a list of language ids, got {value!r}"
        return None
    if not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if name in CHOICES and value not in CHOICES[name]:
        return f"{value!r} is not one of {', '.join(CHOICES[name])}"
    return None
