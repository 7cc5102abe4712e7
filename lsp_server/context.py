"""What the model sees of the workspace: a window around the cursor, and chunks of other files.

Every boundary is chosen so that the prompt stays the same while the user types: the window's first and last
lines move in whole blocks, and the chunks of other files change only when a file is opened, saved or left, not
on a keystroke. The runtime can then reuse its KV cache for everything but the last few tokens.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Characters per token of source code, on the low side, so that a budget in tokens is rarely exceeded (the runtime
# cuts what still does not fit).
CHARS_PER_TOKEN = 3.5


@dataclass
class Cursor:
    """A cursor in a document, in server units (Python string indices)."""

    line: int
    column: int


@dataclass
class Window:
    prefix: str
    suffix: str
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the cursor line after the cursor
    first_line: int


def clamp_cursor(lines: list[str], line: int, column: int) -> Cursor:
    """A position past the end of a line or of the document lands on that end instead of failing."""
    if not lines:
        return Cursor(0, 0)
    line = max(0, min(line, len(lines) - 1))
    text = lines[line].rstrip("\r\n")
    return Cursor(line, max(0, min(column, len(text))))


def window(lines: list[str], cursor: Cursor, prefix_tokens: int, suffix_tokens: int, block: int) -> Window:
    """The code before and after the cursor within a token budget each, with edges that survive typing.

    The first line is rounded forward to a multiple of `block`: lines above the cursor keep their numbers while
    the user types, so the start moves only in whole blocks. The suffix is measured from the cursor, not cut at a
    line number: lines below the cursor move with it when a line is inserted, so its content stays the same.
    """
    current = lines[cursor.line] if lines else ""
    bare = current.rstrip("\r\n")
    before, after = bare[: cursor.column], bare[cursor.column :]
    budget = prefix_tokens * CHARS_PER_TOKEN - len(before)
    first = cursor.line
    while first > 0 and budget - len(lines[first - 1]) >= 0:
        first -= 1
        budget -= len(lines[first])
    if first % block and first > 0:
        first = min(cursor.line, first + block - first % block)
    budget = suffix_tokens * CHARS_PER_TOKEN - len(after)
    last = cursor.line + 1
    while last < len(lines) and budget - len(lines[last]) >= 0:
        budget -= len(lines[last])
        last += 1
    prefix = "".join(_plain(line) for line in lines[first : cursor.line]) + before
    ending = current[len(bare) :]
    suffix = after + (ending and "\n") + "".join(_plain(line) for line in lines[cursor.line + 1 : last])
    return Window(prefix, suffix, before, after, first)


def _plain(line: str) -> str:
    return line[:-2] + "\n" if line.endswith("\r\n") else line


@dataclass
class Chunk:
    uri: str
    path: str
    start: int
    text: str
    added: float = field(default_factory=time.monotonic)


class ChunkRing:
    """Recently seen pieces of files (like llama.vim's ring buffer), offered to the model as related code."""

    def __init__(self, size: int = 16) -> None:
        self.chunks: deque[Chunk] = deque(maxlen=size)

    def add(self, uri: str, path: str, lines: list[str], around: int, block: int) -> None:
        """Remember the block of `block` lines around line `around`, replacing an overlapping one from that file."""
        if not lines:
            return
        start = max(0, around - block // 2)
        start -= start % max(1, block // 2)
        text = "".join(_plain(line) for line in lines[start : start + block]).strip("\n")
        if not text.strip():
            return
        for chunk in list(self.chunks):
            if chunk.uri == uri and abs(chunk.start - start) < block:
                if chunk.text == text:
                    return
                self.chunks.remove(chunk)
        self.chunks.append(Chunk(uri, path, start, text))

    def forget(self, uri: str) -> None:
        for chunk in [c for c in self.chunks if c.uri == uri]:
            self.chunks.remove(chunk)

    def neighbours(self, exclude_uri: str, count: int) -> list[dict[str, Any]]:
        """The most recent chunks from other files, oldest first, so that a new chunk changes the prompt least."""
        picked = [c for c in self.chunks if c.uri != exclude_uri][-count:] if count else []
        return [{"path": c.path, "text": c.text} for c in picked]


def allows_multiline(policy: str, view: Window) -> bool:
    """ "auto": several lines only when nothing follows the cursor on its line."""
    return policy == "always" or (policy == "auto" and not view.line_after.strip())


def completion_request(
    view: Window,
    prefix: str,
    *,
    uri: str,
    path: str,
    language: str,
    neighbours: list[dict[str, Any]],
    multiline: bool,
    max_tokens: int,
    time_budget_ms: int,
) -> dict[str, Any]:
    """The runtime's `complete` parameters (docs/protocol.md) for one cursor position."""
    params: dict[str, Any] = {
        "prefix": prefix,
        "suffix": view.suffix,
        "path": path,
        "language": language,
        "document": uri,
        "neighbours": neighbours,
        "max_tokens": max_tokens,
        "time_budget_ms": time_budget_ms,
    }
    if not multiline:
        params["stop"] = ["\n"]  # a one-line suggestion: no need to generate past the line
    return params
