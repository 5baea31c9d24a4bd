"""A five-node lockd cluster survives kill -9 and SIGSTOP of its leader (real processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import IndeterminateError, LockServiceError
from reference_impl.server.local_cluster import LocalCluster
from tests.support.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

FAILOVER_PROMISE_SECONDS = 5.0  # the design promise; the benchmark measures the real figure


async def _load(
    endpoints: list[str], lock: str, stop: asyncio.Event, grants: list[tuple[str, int, str]]
) -> None:
    """Acquire/release ``lock`` in a loop, recording every acknowledged grant."""
    client = await AsyncLockClient.connect(endpoints, ttl=10.0, timeout=2.0)
    try:
        while not stop.is_set():
            try:
                lease = await client.acquire(lock, timeout=5.0)
                grants.append((lock, lease.token, lease.session_id))
                await client.release(lock)
            except IndeterminateError:
                await asyncio.sleep(0.05)
    finally:
        await client.close()


async def _all_events(endpoint: str, endpoints: list[str]) -> dict[tuple[str, int], str]:
    """Every acquired event (name, token) -> session, read by watching from revision 1."""
    client = await AsyncLockClient.connect(endpoints, ttl=10.0)
    acquired: dict[tuple[str, int], str] = {}
    try:
        last = (await client.status(endpoint))["applied_index"]
        assert isinstance(last, int)
        probe = await client.acquire("probe/end")  # a marker event after everything else
        async for event in client.watch("", from_revision=1):
            if event.kind == "acquired" and event.token is not None and event.session:
                acquired[(event.name, event.token)] = event.session
            if event.name == "probe/end" and event.token == probe.token:
                break
    finally:
        await client.close()
    return acquired


async def _first_acquire_after(endpoints: list[str], started: float) -> float:
    client = await AsyncLockClient.connect(endpoints, ttl=10.0, timeout=2.0)
    try:
        while True:
            try:
                await client.acquire("failover/probe", timeout=1.0)
                await client.release("failover/probe")
                return time.monotonic() - started
            except LockServiceError:
                await asyncio.sleep(0.02)
    finally:
        await client.close()


def test_kill_9_of_the_leader_loses_no_grant_and_reuses_no_token(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=5)
    leader = cluster.start_all()
    endpoints = cluster.endpoints

    async def scenario() -> tuple[list[tuple[str, int, str]], float, dict[tuple[str, int], str]]:
        stop = asyncio.Event()
        grants: list[tuple[str, int, str]] = []
        locks = ["own/a", "own/b", "shared/x", "shared/x"]
        workers = [asyncio.create_task(_load(endpoints, lock, stop, grants)) for lock in locks]
        await wait_until_async(lambda: len(grants) >= 20, timeout=30, what="load under way")
        before = len(grants)
        killed_at = time.monotonic()
        cluster.kill(leader)
        gap = await asyncio.wait_for(_first_acquire_after(endpoints, killed_at), 30)
        after_failover = len(grants)
        await wait_until_async(
            lambda: len(grants) >= after_failover + 20, timeout=30, what="load resumed after it"
        )
        stop.set()
        await asyncio.gather(*workers)
        assert before > 0, "load made no progress around the failover"
        assert len(grants) > before, "load made no progress around the failover"
        survivor = next(e for n, e in zip(cluster.nodes, endpoints, strict=True) if n.id != leader)
        events = await _all_events(
            survivor, [e for e in endpoints if e != cluster.node(leader).endpoint]
        )
        return grants, gap, events

    grants, gap, events = asyncio.run(scenario())
    assert gap < FAILOVER_PROMISE_SECONDS, f"no acquire for {gap:.2f}s after kill -9"
    by_lock: dict[str, list[int]] = {}
    for lock, token, _ in grants:
        by_lock.setdefault(lock, []).append(token)
    for lock, tokens in by_lock.items():
        assert len(tokens) == len(set(tokens)), f"{lock}: a fencing token was handed out twice"
    for lock, token, session in grants:
        assert events.get((lock, token)) == session, f"acknowledged grant {lock}@{token} lost"
    # The killed node restarts from its WAL and catches up.
    cluster.start(leader)

    def caught_up() -> bool:
        status = cluster.status(leader)
        new_leader = cluster.leader()
        target = cluster.status(new_leader) if new_leader else None
        return bool(
            status
            and target
            and int(str(status["applied_index"])) >= int(str(target["commit_index"]))
        )

    wait_until(caught_up, timeout=20, what=f"restarted {leader} caught up", details=cluster.logs)


def test_paused_leader_is_replaced_and_steps_down_when_resumed(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=5)
    leader = cluster.start_all()
    old_endpoint = cluster.node(leader).endpoint

    async def scenario() -> None:
        client = await AsyncLockClient.connect(cluster.endpoints, ttl=10.0, timeout=1.0)
        try:
            first = await client.acquire("pause/x")
            await client.release("pause/x")
            cluster.pause(leader)
            paused_at = time.monotonic()
            second = None
            while time.monotonic() - paused_at < 15:
                try:
                    second = await client.acquire("pause/x", timeout=2.0)
                    break
                except LockServiceError:
                    await asyncio.sleep(0.05)
            assert second is not None, "no new leader served while the old one was paused"
            assert second.token > first.token
            assert time.monotonic() - paused_at < FAILOVER_PROMISE_SECONDS + 2
            cluster.resume(leader)
            # The old leader learns the higher term and refuses writes from then on.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = cluster.status(leader)
                if status and status["role"] != "leader":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("resumed old leader still claims leadership")
            lone = await AsyncLockClient.connect(cluster.endpoints, ttl=10.0)
            try:
                owner = await lone.owner("pause/x", endpoint=old_endpoint)
                assert owner.token == second.token, "the old leader served a stale read"
            finally:
                await lone.close()
        finally:
            await client.close()

    asyncio.run(scenario())
