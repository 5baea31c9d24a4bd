"""Closing a client leaves nothing running: no reader task is left pending, even when a node hangs
during the handshake, the caller gives up on a close, or two requests open one endpoint at once.

A reader task dropped while pending is what asyncio reports as "Task was destroyed but it is
pending" (it was: the bench's log showed dozens per run). Ports: 24700-24702 (one lockd) and
24710 (a node that accepts and never answers), the integration suite's range.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.connection import Connection
from reference_impl.client.errors import ConnectionLost
from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("lockd1"), size=1, base_port=free_port_block(10))
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


@asynccontextmanager
async def silent_node() -> AsyncIterator[str]:
    """A node that accepts connections and never answers (a paused or wedged lockd)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def pending_readers() -> list[asyncio.Task[object]]:
    """Connection reader tasks still pending on the running loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "_read_loop" in repr(task.get_coro())
    ]


async def settle() -> None:
    """Let cancelled tasks run to their end (a few loop iterations)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_node_silent_during_hello_is_connection_lost_and_leaves_no_reader() -> None:
    async def scenario() -> None:
        async with silent_node() as endpoint:
            with pytest.raises(ConnectionLost, match="no answer to hello"):
                await Connection.open(endpoint, timeout=0.3)
            await settle()
            assert pending_readers() == []

    asyncio.run(scenario())


def test_an_open_cancelled_during_hello_leaves_no_reader() -> None:
    async def scenario() -> None:
        async with silent_node() as endpoint:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(Connection.open(endpoint, timeout=5.0), 0.3)
            await settle()
            assert pending_readers() == []

    asyncio.run(scenario())


def test_a_close_the_caller_gives_up_on_still_stops_every_reader(single: LocalCluster) -> None:
    async def scenario() -> None:
        client = await AsyncLockClient.connect(single.endpoints, ttl=5.0, timeout=2.0)
        await client.acquire("shutdown/a")
        assert pending_readers()  # connected: a reader runs
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0)  # close() is now waiting (keepalive or close_session)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await settle()
        assert pending_readers() == []

    asyncio.run(scenario())


def test_concurrent_requests_on_a_fresh_endpoint_share_one_connection(
    single: LocalCluster,
) -> None:
    async def scenario() -> None:
        client = await AsyncLockClient.connect(single.endpoints, ttl=5.0, timeout=2.0)
        try:
            endpoint = single.endpoints[0]
            for connection in list(client._connections.values()):
                await connection.close()  # the next requests must reconnect, both at once
            owners = await asyncio.gather(*(client.owner(f"shared/{i}") for i in range(4)))
            assert [o.holders for o in owners] == [(), (), (), ()]
            assert len(pending_readers()) == 1
            assert not client._connections[endpoint].closed
        finally:
            await client.close()
        await settle()
        assert pending_readers() == []

    asyncio.run(scenario())


def test_many_clients_closed_log_no_destroyed_pending_task(
    single: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        for round_ in range(3):
            clients = await asyncio.gather(
                *(AsyncLockClient.connect(single.endpoints, ttl=5.0) for _ in range(4))
            )
            await asyncio.gather(*(c.acquire(f"churn/{round_}/{i}") for i, c in enumerate(clients)))
            await asyncio.gather(*(c.close() for c in clients))

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert not [r for r in caplog.records if "Task was destroyed" in r.getMessage()]


def test_closing_a_session_the_client_counts_as_lost_frees_its_locks_at_once(
    single: LocalCluster,
) -> None:
    # With drift_bound 0.45 the client counts its 4 s session lost after 2.2 s without an
    # acknowledged keepalive; the service would keep it (and the lock) until 4 s. close()
    # still ends it, so the waiter gets the lock well before the service's expiry.
    ttl = 4.0

    async def scenario() -> None:
        holder = await AsyncLockClient.connect(single.endpoints, ttl=ttl, drift_bound=0.45)
        waiter = await AsyncLockClient.connect(single.endpoints, ttl=10.0)
        try:
            first = await holder.acquire("lost/x")
            stalled = asyncio.create_task(holder.stall_keepalive(ttl))
            loop = asyncio.get_running_loop()
            while holder.session_alive():
                await asyncio.sleep(0.05)
            lost_at = loop.time()
            waiting = asyncio.create_task(waiter.acquire("lost/x", timeout=ttl * 2))
            await holder.close()
            second = await waiting
            granted_after = loop.time() - lost_at
            assert second.token > first.token
            assert granted_after < ttl * 0.4, granted_after  # not the service's TTL expiry
            await stalled
        finally:
            await asyncio.gather(holder.close(), waiter.close())

    asyncio.run(scenario())
