"""Session time is the leader's: a new leader grants a fresh TTL; lock-delay holds a dead holder's
lock; unsafe switches announce themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.connection import Connection
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


async def _raw_session_holding(endpoint: str, name: str, ttl: float) -> str:
    """A session that never sends keepalives, holding ``name``."""
    connection = await Connection.open(endpoint, timeout=2.0)
    try:
        opened = await connection.call(
            "open_session", {"client_id": "raw", "seq": 1, "ttl": ttl}, timeout=5.0
        )
        session = str(opened["session"])
        await connection.call(
            "acquire",
            {"client_id": "raw", "seq": 2, "session": session, "name": name},
            timeout=5.0,
        )
        return session
    finally:
        await connection.close()


def test_a_new_leader_gives_live_sessions_a_fresh_ttl(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=3)
    leader = cluster.start_all()
    ttl = 3.0

    async def scenario() -> None:
        session = await _raw_session_holding(cluster.node(leader).endpoint, "grace/x", ttl)
        await asyncio.sleep(1.0)  # the session ages 1 s under the old leader
        killed_at = time.monotonic()
        cluster.kill(leader)
        survivors = [n.endpoint for n in cluster.nodes if n.id != leader]
        reader = await AsyncLockClient.connect(survivors, ttl=10.0)
        try:
            # Under the old leader's clock the session ends by killed_at - 1 + ttl; a new leader
            # is elected no sooner than ~0.25 s after the kill (the minimum election timeout
            # less a heartbeat) and then starts a fresh TTL. So half a second after the old
            # deadline the session must still hold the lock (and ~0.75 s before the new one).
            await asyncio.sleep(max(0.0, killed_at - 1.0 + ttl + 0.5 - time.monotonic()))
            owner = await reader.owner("grace/x")
            assert [h.session for h in owner.holders] == [session], "expired across failover"
            deadline = time.monotonic() + 10
            while (await reader.owner("grace/x")).holders and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not (await reader.owner("grace/x")).holders, "the dead session never expired"
        finally:
            await reader.close()

    asyncio.run(scenario())


def test_lock_delay_keeps_an_expired_holders_lock_for_the_delay(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=1, extra_config={"lock_delay_ms": 1500}, unsafe=["reuse-tokens"])
    cluster.start_all()
    log_text = cluster.nodes[0].log_file.read_text()
    assert "UNSAFE MODE --unsafe-reuse-tokens" in log_text
    assert cluster.status("n1")["unsafe"] == ["reuse-tokens"]  # type: ignore[index]

    async def scenario() -> None:
        await _raw_session_holding(cluster.endpoints[0], "delay/x", 1.0)
        expired_by = time.monotonic() + 1.0
        waiter = await AsyncLockClient.connect(cluster.endpoints, ttl=10.0)
        try:
            await asyncio.wait_for(waiter.acquire("delay/x"), 15)
            granted = time.monotonic()
        finally:
            await waiter.close()
        assert granted - expired_by >= 1.4, "granted before the lock-delay passed"

    asyncio.run(scenario())
