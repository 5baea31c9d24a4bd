"""The bench's lockd adapter stalls through the client library's public ``stall_keepalive``.

A short stall keeps the session (keepalives resume); a stall longer than the TTL loses it, the
held lock goes to another process, and the staller's next acquire opens a fresh session. One
real lockd on ports 24720-24722 (the integration suite's range).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.backends.reference_client import open_reference_client
from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

TTL_S = 1.0


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("lockd1"), size=1, base_port=free_port_block(10))
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def test_a_short_stall_keeps_the_session_and_resumes_keepalives(single: LocalCluster) -> None:
    async def scenario() -> None:
        endpoint = single.endpoints[0]
        client = await open_reference_client([endpoint], endpoint, ttl=3.0, process=1)
        try:
            grant = await client.acquire("stall/short", timeout=2.0)
            await client.stall(0.2)
            assert client.session == grant.session
            # keepalives resumed: the session outlives a full TTL after the stall
            await asyncio.sleep(3.5)
            assert client.session == grant.session
            await client.release("stall/short")
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_stall_beyond_the_ttl_hands_the_lock_over(single: LocalCluster) -> None:
    async def scenario() -> None:
        endpoint = single.endpoints[0]
        staller = await open_reference_client([endpoint], endpoint, ttl=TTL_S, process=1)
        waiter = await open_reference_client([endpoint], endpoint, ttl=5.0, process=2)
        try:
            first = await staller.acquire("stall/long", timeout=2.0)
            stall = asyncio.create_task(staller.stall(TTL_S * 2))
            second = await waiter.acquire("stall/long", timeout=TTL_S * 4)
            assert first.token is not None
            assert second.token is not None
            assert second.token > first.token
            await stall
            await waiter.release("stall/long")
            again = await staller.acquire("stall/long", timeout=2.0)
            assert again.session != first.session  # the lost session was replaced
            assert again.token is not None
            assert again.token > second.token
        finally:
            await asyncio.gather(staller.close(), waiter.close())

    asyncio.run(scenario())
