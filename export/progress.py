"""Progress for long work: tqdm bars and stage lines on a terminal, silence when output is not a terminal."""

from __future__ import annotations

import os
import sys
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


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        stream = stream or sys.stderr
        self.enabled = stream.isatty() if enabled is None else enabled
        # A private duplicate of the terminal, so bars keep drawing while fds 1 and 2 go to a log.
        self.stream = os.fdopen(os.dup(stream.fileno()), "w", buffering=1) if self.enabled else stream

    def stage(self, message: str) -> None:
        if self.enabled:
            tqdm.write(f"• {message}", file=self.stream)

    def note(self, message: str) -> None:
        if self.enabled:
            tqdm.write(f"  {message}", file=self.stream)

    def bar(self, desc: str, total: int, unit: str) -> Bar:
        if not self.enabled:
            return Bar(None)
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
            desc="save", unit="tensor", file=self.stream, disable=not self.enabled, leave=False, dynamic_ncols=True
        )
