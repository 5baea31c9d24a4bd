"""Helpers shared by the Replica tests: start and stop a group, wait for one leader or for a
condition, run a scenario with an overall time limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from reference_impl.server.replica import Replica
from tests.support.waiting import wait_until_async


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

    def the_leader() -> Replica | None:
        leaders = [r for r in members if r.running and r.is_leader and r.id != exclude]
        return leaders[0] if len(leaders) == 1 else None

    return await wait_until_async(the_leader, timeout=timeout, what="a single leader")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    await wait_until_async(check, timeout=timeout, what="the condition")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))
