"""Progress for long work: tqdm bars and stage lines on a terminal; on anything else (a log, a pipe, an editor's
output panel) the same stages as plain timestamped lines, and each bar as a line per tenth of its work."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm


class Bar:
    def __init__(self, bar: tqdm | None) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def update_to(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LineBar(Bar):
    """A bar for a log: one line each time another tenth of the work is done."""

    def __init__(self, desc: str, total: int, unit: str, write: Callable[[str], None]) -> None:
        super().__init__(None)
        self.desc, self.total, self.unit, self.write = desc, max(total, 1), unit, write
        self.done = 0
        self.shown = 0  # tenths already written

    def update(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def update_to(self, done: int) -> None:
        self.done = done
        tenths = min(10, self.done * 10 // self.total)
        if tenths > self.shown:
            self.shown = tenths
            self.write(
                f"{self.desc}: {self._amount(self.done)} of {self._amount(self.total)}{self._unit()} ({tenths * 10}%)"
            )

    def _amount(self, n: int) -> str:
        if self.unit == "B":
            return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
        return str(n)

    def _unit(self) -> str:
        return "" if self.unit == "B" else f" {self.unit}{'s' if self.total != 1 else ''}"


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        stream = stream or sys.stderr
        self.enabled = True if enabled is None else enabled
        self.interactive = self.enabled and stream.isatty()
        self.started = time.monotonic()
        # A private duplicate of the destination, so progress keeps reaching it while fds 1 and 2 go to a log.
        self.stream: TextIO = stream
        if self.enabled:
            try:
                self.stream = os.fdopen(os.dup(stream.fileno()), "w", buffering=1)
            except (AttributeError, OSError, io.UnsupportedOperation):
                self.stream = stream

    def _line(self, message: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        print(f"[{minutes:02d}:{seconds:02d}] {message}", file=self.stream, flush=True)

    def stage(self, message: str) -> None:
        if self.interactive:
            tqdm.write(f"• {message}", file=self.stream)
        elif self.enabled:
            self._line(message)

    def note(self, message: str) -> None:
        if self.interactive:
            tqdm.write(f"  {message}", file=self.stream)
        elif self.enabled:
            self._line(f"  {message}")

    def bar(self, desc: str, total: int, unit: str) -> Bar:
        if not self.enabled:
            return Bar(None)
        if not self.interactive:
            return LineBar(desc, total, unit, self._line)
        scale = unit == "B"
        return Bar(
            tqdm(
                total=total,
                desc=desc,
                unit=unit,
                unit_scale=scale,
                unit_divisor=1024 if scale else 1000,
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )
        )

    def builder_save_bar(self, *args: Any, **kwargs: Any) -> tqdm:
        """Stand-in for the tqdm() the builder opens while saving: ours, on our stream, off when quiet."""
        return tqdm(
            desc="save", unit="tensor", file=self.stream, disable=not self.interactive, leave=False, dynamic_ncols=True
        )
