"""The lock-service load loops: uncontended pairs and contended hand-offs, for any lock client.

lockd's ``AsyncLockClient`` and the etcd benchmark client both fit ``BenchClient``, so the same
loops measure both systems the same way. Every loop is bounded by ``seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from reference_impl.client.async_client import AsyncLockClient


class BenchClient(Protocol):
    """What the driver needs of a lock client: lockd's AsyncLockClient or EtcdLockClient."""

    async def acquire(self, name: str, *, timeout: float) -> Any: ...

    async def release(self, name: str) -> None: ...

    async def close(self) -> None: ...


Connect = Callable[[], Awaitable[BenchClient]]


def lockd_connect(endpoints: list[str]) -> Connect:
    """A ``Connect`` opening one lockd session (30 s TTL) per client."""

    async def connect() -> BenchClient:
        return await AsyncLockClient.connect(endpoints, ttl=30.0)

    return connect


async def uncontended(connect: Connect, clients: int, seconds: float) -> tuple[float, list[float]]:
    """(acquire+release pairs/s, acquire latencies in s): each client on its own lock."""
    sessions = [await connect() for _ in range(clients)]
    latencies: list[float] = []
    pairs = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int, client: BenchClient) -> None:
        nonlocal pairs
        name = f"bench/own/{i}"
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await client.acquire(name, timeout=10.0)
            latencies.append(time.perf_counter() - started)
            await client.release(name)
            pairs += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(sessions)))
    elapsed = time.monotonic() - started
    for client in sessions:
        await client.close()
    return pairs / elapsed, latencies


async def contended(connect: Connect, clients: int, seconds: float) -> float:
    """Grants per second with ``clients`` clients taking turns on one lock."""
    sessions = [await connect() for _ in range(clients)]
    grants = 0
    deadline = time.monotonic() + seconds

    async def worker(client: BenchClient) -> None:
        nonlocal grants
        while time.monotonic() < deadline:
            await client.acquire("bench/contended", timeout=10.0)
            grants += 1
            await client.release("bench/contended")

    started = time.monotonic()
    await asyncio.gather(*(worker(c) for c in sessions))
    elapsed = time.monotonic() - started
    for client in sessions:
        await client.close()
    return grants / elapsed


async def gap_after_kill(
    client: BenchClient, kill: Callable[[], None], errors: tuple[type[Exception], ...]
) -> float:
    """Seconds from ``kill()`` (of the leader) until ``client`` acquires a lock again; ``errors``
    are what the client raises while the cluster has no leader. Closes the client."""
    await client.acquire("bench/failover", timeout=5.0)
    await client.release("bench/failover")
    killed = time.monotonic()
    kill()
    while True:
        try:
            await client.acquire("bench/failover", timeout=1.0)
            gap = time.monotonic() - killed
            await client.release("bench/failover")
            break
        except errors:
            await asyncio.sleep(0.005)
    await client.close()
    return gap
