"""The etcd client against five real etcd members (local runtime, no root): the lock recipe,
create-revision tokens, a timed-out wait that is a definite fail, and a lost lease."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backends.etcd import ETCD, EtcdBackend
from bench.backends.etcd_client import EtcdLockClient
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.local import local_down, local_up
from lockbench.parallel import on_each_node
from lockbench.protocols import DefiniteFailure, Indeterminate

pytestmark = pytest.mark.process  # real servers (etcd, redis-server) or netns nodes

BASE_OFFSET = 1500  # ports 3879/3880 and up: clear of other suites' local clusters
LEADER_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    if not os.access(ETCD.program, os.X_OK):
        pytest.skip(f"{ETCD.program} missing: install the Debian package {ETCD.package}")
    cluster_dir = Path(tmp_path_factory.mktemp("etcd")) / "cluster"
    backend = EtcdBackend()
    try:
        with open_cluster(local_up(cluster_dir, base_offset=BASE_OFFSET)) as handle:
            backend.deploy(handle)
            on_each_node("start", handle.nodes, backend.start)
            deadline = time.monotonic() + LEADER_TIMEOUT_S
            while backend.leader(handle) is None:
                assert time.monotonic() < deadline, "etcd elected no leader"
                time.sleep(0.2)
            handle.backend = backend  # type: ignore[attr-defined]
            try:
                yield handle
            finally:
                on_each_node("stop", handle.nodes, backend.stop)
    finally:
        local_down(cluster_dir)


async def _client(cluster: ClusterHandle, node: str, process: int) -> EtcdLockClient:
    backend: EtcdBackend = cluster.backend  # type: ignore[attr-defined]
    client = await backend.open_client(cluster, cluster.node(node), ttl=2, process=process)
    assert isinstance(client, EtcdLockClient)
    return client


def test_the_leader_is_found_from_the_status_endpoint(cluster: ClusterHandle) -> None:
    backend: EtcdBackend = cluster.backend  # type: ignore[attr-defined]
    leader, term = backend.leader_status(cluster)
    assert leader in {node.name for node in cluster.nodes}
    assert term is not None
    assert term >= 1


def test_tokens_are_create_revisions_and_waits_are_fifo(cluster: ClusterHandle) -> None:
    async def scenario() -> None:
        a = await _client(cluster, "n1", 0)
        b = await _client(cluster, "n2", 1)
        first = await a.acquire("lock/fifo", timeout=1)
        seen = await b.owner("lock/fifo", node="n3")  # a local read on another member
        assert seen.holders == (a.session,)
        assert seen.token == first.token
        waiting = asyncio.ensure_future(b.acquire("lock/fifo", timeout=5))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await a.release("lock/fifo")
        second = await waiting
        assert second.token is not None
        assert first.token is not None
        assert second.token > first.token
        await b.release("lock/fifo")
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_timed_out_wait_is_a_definite_fail_and_leaves_nothing(cluster: ClusterHandle) -> None:
    async def scenario() -> None:
        a = await _client(cluster, "n1", 0)
        b = await _client(cluster, "n2", 1)
        await a.acquire("lock/timeout", timeout=1)
        started = time.monotonic()
        with pytest.raises(DefiniteFailure, match="left the queue"):
            await b.acquire("lock/timeout", timeout=0.5)
        assert time.monotonic() - started < 3
        # the waiter's lease was revoked: nothing of it is queued behind the holder
        await a.release("lock/timeout")
        assert (await a.owner("lock/timeout")).holders == ()
        grant = await b.acquire("lock/timeout", timeout=1)  # on a fresh lease
        assert grant.session == b.session
        await b.release("lock/timeout")
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_lapsed_lease_surfaces_as_a_lost_lock(cluster: ClusterHandle) -> None:
    async def scenario() -> None:
        a = await _client(cluster, "n1", 0)
        b = await _client(cluster, "n2", 1)
        await a.acquire("lock/lease", timeout=1)
        assert a.lease_deadline() is None
        await a.stall(3.5)  # keepalives stop: etcd expires the 2 s lease
        deadline = a.lease_deadline()
        assert deadline is not None
        assert deadline < time.monotonic()
        taken = await b.acquire("lock/lease", timeout=3)  # the lock went to b
        assert taken.session == b.session
        with pytest.raises(Indeterminate, match="lease expired"):
            await a.release("lock/lease")
        await b.release("lock/lease")
        await a.close()
        await b.close()

    asyncio.run(scenario())
