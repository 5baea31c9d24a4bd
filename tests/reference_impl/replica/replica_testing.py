"""Helpers shared by the Replica tests: start and stop a group, wait for one leader or for a
condition, run a scenario with an overall time limit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from reference_impl.server.replica import Replica


@contextlib.asynccontextmanager
async def running(replicas: Iterable[Replica]) -> AsyncIterator[None]:
    members = list(replicas)
    try:
        for replica in members:
            await replica.start()
        yield
    finally:
        for replica in members:
            await replica.stop()


async def single_leader(
    replicas: Iterable[Replica], timeout: float = 5.0, exclude: str | None = None
) -> Replica:
    members = list(replicas)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [r for r in members if r.running and r.is_leader and r.id != exclude]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no single leader within {timeout}s")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))
