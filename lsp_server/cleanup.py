"""Turning what the model wrote into a suggestion worth showing.

No text that the document already has after the cursor, indentation in the file's own style, multi-line
suggestions cut at the end of the block they started in, no trailing whitespace, and nothing at all (None) rather
than an empty suggestion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLOSERS = ")]}>\"'`;,"
FENCE = re.compile(r"\n?```.*$", re.DOTALL)
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")  # control characters and undecodable bytes


@dataclass
class Surroundings:
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the rest of the cursor line
    suffix: str  # everything after the cursor (starting with line_after)
    indent_unit: str  # "\t" or some spaces
    multiline: bool  # whether a multi-line suggestion is allowed here


def indent_unit(lines: list[str]) -> str:
    """The file's indentation step: a tab, or the most common smallest step of leading spaces."""
    tabs = spaces = 0
    steps: dict[int, int] = {}
    previous = 0
    for line in lines[:2000]:
        if not line.strip():
            continue
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if lead.startswith("\t"):
            tabs += 1
        elif lead:
            spaces += 1
        width = len(lead.expandtabs(4))
        if width > previous:
            steps[width - previous] = steps.get(width - previous, 0) + 1
        previous = width
    if tabs > spaces:
        return "\t"
    step = max(steps, key=lambda k: steps[k]) if steps else 4
    return " " * (step if step in (2, 3, 4, 8) else 4)


def clean(text: str, where: Surroundings) -> str | None:
    text = UNPRINTABLE.sub("", FENCE.sub("", text))
    lines = [line.rstrip() for line in text.split("\n")]
    if not where.multiline:
        lines = lines[:1]
    lines = _until_suffix_repeats(lines, where.suffix)
    lines = _within_block(lines, where.line_before)
    lines = [_restyle(line, where.indent_unit) for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    if len(lines) == 1:
        lines[0] = _without_line_tail(lines[0], where.line_after)
    result = "\n".join(lines)
    return result if result.strip() else None


def _until_suffix_repeats(lines: list[str], suffix: str) -> list[str]:
    """Cut where the suggestion starts to repeat the code that follows the cursor."""
    following = [line.strip() for line in suffix.split("\n")[1:] if line.strip()]
    if not following:
        return lines
    anchor = following[0]
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() and line.strip() == anchor:
            return lines[:index]
    return lines


def _indent_width(line: str) -> int:
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(4))


def _within_block(lines: list[str], line_before: str) -> list[str]:
    """A multi-line suggestion ends before the first line that dedents below the line it started on."""
    if len(lines) < 2:
        return lines
    base = _indent_width(line_before) if line_before.strip() else len(line_before.expandtabs(4))
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() and _indent_width(line) < base:
            return lines[:index]
    return lines


def _restyle(line: str, unit: str) -> str:
    """Leading indentation in the file's own style (tabs or spaces)."""
    body = line.lstrip(" \t")
    lead = line[: len(line) - len(body)]
    if not lead:
        return line
    if unit == "\t" and " " in lead:
        width = len(lead.expandtabs(4))
        return "\t" * (width // 4) + " " * (width % 4) + body
    if unit != "\t" and "\t" in lead:
        return lead.expandtabs(len(unit)) + body
    return line


def _without_line_tail(line: str, line_after: str) -> str:
    """Drop the end of a one-line suggestion that the rest of the line already has (a closing bracket, say)."""
    tail = line_after.strip()
    if not tail:
        return line
    if line.endswith(tail) and len(line) > len(tail):
        return line[: -len(tail)]
    closers = ""
    for char in tail:
        if char not in CLOSERS:
            break
        closers += char
    for n in range(len(closers), 0, -1):
        if line.endswith(closers[:n]) and len(line) > n:
            return line[:-n]
    return line
