"""One way for a test to wait: poll a condition until it holds, and fail loudly, naming what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = 60, interval: float = 0.05) -> T:
    """Call `check` until it returns something truthy and return that; after `timeout` seconds, fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


async def until(check: Callable[[], Any], what: str, timeout: float = 30, interval: float = 0.01) -> Any:
    """`wait_until` inside an event loop: `check` may be a coroutine function; sleeps without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
