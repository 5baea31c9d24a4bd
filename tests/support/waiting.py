"""Wait for a condition instead of sleeping a fixed time: a test is as fast as the system under
test allows, and a slow machine gets the whole timeout instead of a guessed pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.02


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_SECONDS,
    details: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; AssertionError
    naming ``what`` (and what ``details()`` shows then, e.g. the nodes' logs) when ``timeout``
    seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            shown = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout:g} s{shown}")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T | None] | None],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_SECONDS,
) -> T:
    """``wait_until`` inside an event loop: the loop keeps running between checks, and
    ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g} s")
        await asyncio.sleep(interval)
