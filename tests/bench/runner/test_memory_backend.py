"""The in-process lock service has the semantics the runner tests rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import pytest

from bench.backends.memory import (
    AcquireTimeout,
    MemoryBackend,
    MemoryLockClient,
    MemoryLockService,
    NotHolder,
    SessionExpired,
)
from lockbench.errors import ConfigError
from lockbench.protocols import Indeterminate, LockEvent

T = TypeVar("T")


def run(scenario: Callable[[MemoryLockService], Awaitable[T]]) -> T:
    async def main() -> T:
        service = MemoryLockService()
        try:
            return await scenario(service)
        finally:
            service.shutdown()

    return asyncio.run(main())


def test_waiters_are_granted_in_fifo_order_with_increasing_tokens() -> None:
    async def scenario(service: MemoryLockService) -> list[tuple[int, int]]:
        clients = [MemoryLockClient(service, ttl=5, process=p) for p in range(4)]
        first = await clients[0].acquire("l", timeout=1)
        grants: list[tuple[int, int]] = []

        async def wait(p: int) -> None:
            grant = await clients[p].acquire("l", timeout=2)
            assert grant.token is not None
            grants.append((p, grant.token))
            await clients[p].release("l")

        tasks = []
        for p in (1, 2, 3):
            tasks.append(asyncio.create_task(wait(p)))
            await asyncio.sleep(0.01)  # queue in this order
        await clients[0].release("l")
        await asyncio.gather(*tasks)
        assert first.token is not None
        return [(0, first.token), *grants]

    grants = run(scenario)
    assert [p for p, _ in grants] == [0, 1, 2, 3]
    tokens = [t for _, t in grants]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 4


def test_acquire_timeout_leaves_the_queue_and_is_definite() -> None:
    async def scenario(service: MemoryLockService) -> None:
        a = MemoryLockClient(service, ttl=5, process=0)
        b = MemoryLockClient(service, ttl=5, process=1)
        await a.acquire("l", timeout=1)
        with pytest.raises(AcquireTimeout):
            await b.acquire("l", timeout=0.05)
        await a.release("l")
        # b's expired waiter must not have been granted the lock behind its back
        assert service.owner("l").holders == ()

    run(scenario)


def test_release_of_a_lock_not_held_is_refused() -> None:
    async def scenario(service: MemoryLockService) -> None:
        client = MemoryLockClient(service, ttl=5, process=0)
        with pytest.raises(NotHolder):
            await client.release("never-acquired")

    run(scenario)


def test_a_stalled_holder_loses_its_lock_to_the_next_waiter_with_a_higher_token() -> None:
    async def scenario(service: MemoryLockService) -> tuple[int, int, list[str]]:
        holder = MemoryLockClient(service, ttl=0.2, process=0)
        waiter = MemoryLockClient(service, ttl=5, process=1)
        old = await holder.acquire("l", timeout=1)
        events: list[LockEvent] = []

        async def watch() -> None:
            async for event in service.watch("l", 1):
                events.append(event)

        watcher = asyncio.create_task(watch())
        waiting = asyncio.create_task(waiter.acquire("l", timeout=5))
        await holder.stall(0.5)
        new = await waiting
        with pytest.raises(SessionExpired):
            await holder.release("l")
        # the next acquire of the stalled process runs in a fresh session
        fresh = await holder.acquire("other", timeout=1)
        assert fresh.session != old.session
        watcher.cancel()
        assert old.token is not None
        assert new.token is not None
        return old.token, new.token, [e.kind for e in events]

    old, new, kinds = run(scenario)
    assert new > old
    assert kinds[:3] == ["acquired", "expired", "acquired"]


def test_shared_holders_coexist_and_exclusive_waits_for_them() -> None:
    async def scenario(service: MemoryLockService) -> None:
        r1, r2, w = (MemoryLockClient(service, ttl=5, process=p) for p in range(3))
        await r1.acquire("l", timeout=1, shared=True)
        await r2.acquire("l", timeout=1, shared=True)
        assert len(service.owner("l").holders) == 2
        with pytest.raises(AcquireTimeout):
            await w.acquire("l", timeout=0.05)
        await r1.release("l")
        await r2.release("l")
        await w.acquire("l", timeout=1)

    run(scenario)


def test_watch_resumes_from_a_revision_without_losing_or_repeating_events() -> None:
    async def scenario(service: MemoryLockService) -> list[int]:
        client = MemoryLockClient(service, ttl=5, process=0)
        for _ in range(3):
            await client.acquire("w/a", timeout=1)
            await client.release("w/a")
        await client.acquire("x/other", timeout=1)  # outside the prefix
        seen: list[int] = []
        stream = service.watch("w/", 3)
        async for event in stream:
            seen.append(event.revision)
            if len(seen) == 4:
                break
        assert isinstance(stream, AsyncGenerator)  # closed, as a watcher that stops reading does
        await stream.aclose()
        return seen

    assert run(scenario) == [3, 4, 5, 6]


def test_lost_replies_take_effect_but_report_an_unknown_outcome() -> None:
    async def scenario(service: MemoryLockService) -> None:
        backend = MemoryBackend.from_options({"lost_replies": 1.0})
        backend._service = service
        client = await backend.open_client(None, None, ttl=5, process=0)  # type: ignore[arg-type]
        with pytest.raises(Indeterminate):
            await client.acquire("l", timeout=1)
        assert service.owner("l").holders == (client.session,)

    run(scenario)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"unsafe": ["typo"]}, "unsafe"),
        ({"lost_replies": 2}, "lost_replies"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_memory_backend_options_name_the_option(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        MemoryBackend.from_options(options)
