"""A ZooKeeper lock holder cut off together with its server: the known anomaly, up close.

The holder's clients talk only to n1's server; n1 is isolated from the other four. The leader
stops hearing of the holders' sessions, expires them and grants their locks to waiters on other
nodes, while n1 (a follower that notices the lost leader only after ``sync_limit`` ticks) goes
on answering its clients' pings. A lease read from those answers (``lease_from="ping"``, what
kazoo's connection state tells an application) still looks current at the takeover; the bench's
lease, read from heartbeat syncs the leader must answer, has lapsed before it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backends.zookeeper import (
    DEBIAN_PACKAGE,
    SERVER_JAR,
    ZooKeeperBackend,
    client_port,
    server_mode,
)
from bench.backends.zookeeper_client import ZooKeeperLockClient, open_zookeeper_client
from bench.cluster import ClusterHandle
from lockbench.protocols import Grant
from nemesis.fault import FaultTarget
from nemesis.partition import PartitionNemesis
from nemesis.remote import NodeLocks
from nemesis.shapes import isolate
from tests.support.netns_cluster import netns_cluster
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(
        not Path(SERVER_JAR).is_file(),
        reason=f"no {SERVER_JAR}: install the Debian package '{DEBIAN_PACKAGE}'",
    ),
]

PREFIX = "lby"
SUBNET = "10.77.15.0/24"
TTL_S = 3.0


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[ClusterHandle]:
    """Five ZooKeeper servers on a netns cluster, serving (a leader and a serving majority)."""
    with netns_cluster(tmp_path, prefix=PREFIX, subnet=SUBNET) as cluster:
        backend = ZooKeeperBackend()
        backend.deploy(cluster)
        try:
            for node in cluster.nodes:
                backend.start(node)
            wait_until(
                lambda: (
                    backend.leader(cluster) is not None
                    and all(server_mode(node) for node in cluster.nodes)
                ),
                timeout=300,
                interval=0.5,
                what="a ZooKeeper ensemble with every server serving",
            )
            yield cluster
        finally:
            for node in cluster.nodes:
                backend.kill(node)


def endpoint(cluster: ClusterHandle, name: str) -> list[str]:
    node = cluster.node(name)
    return [f"{node.address}:{client_port(node)}"]


async def granted_at(acquire: asyncio.Task[Grant]) -> tuple[Grant, float]:
    grant = await acquire
    return grant, time.monotonic()


@pytest.mark.timeout(600)
def test_a_holder_cut_off_with_its_server_loses_its_sync_lease_before_the_takeover(
    ensemble: ClusterHandle,
) -> None:
    async def scenario() -> None:
        cut_off = endpoint(ensemble, "n1")
        sync_holder = await open_zookeeper_client(cut_off, ttl=TTL_S, process=0)
        ping_holder = await open_zookeeper_client(cut_off, ttl=TTL_S, process=1, lease_from="ping")
        waiters = [
            await open_zookeeper_client(endpoint(ensemble, name), ttl=TTL_S, process=2 + i)
            for i, name in enumerate(("n2", "n3"))
        ]
        clients: list[ZooKeeperLockClient] = [sync_holder, ping_holder, *waiters]
        partition = PartitionNemesis(ensemble, "lby-session-expiry", NodeLocks())
        try:
            first_a = await sync_holder.acquire("a", timeout=10)
            first_b = await ping_holder.acquire("b", timeout=10)
            taking_a = asyncio.create_task(waiters[0].acquire("a", timeout=60))
            taking_b = asyncio.create_task(waiters[1].acquire("b", timeout=60))
            await asyncio.sleep(TTL_S)  # queued, and the holders' leases renewed meanwhile
            assert sync_holder.lease_deadline() is None
            assert ping_holder.lease_deadline() is None
            assert not taking_a.done()
            assert not taking_b.done()

            names = [node.name for node in ensemble.nodes]
            await asyncio.to_thread(
                partition.invoke, "start-partition", FaultTarget(grudge=isolate(names, "n1"))
            )
            (second_a, a_at), (second_b, _) = await asyncio.gather(
                granted_at(taking_a), granted_at(taking_b)
            )
            # kazoo's view: its own server still answers, the lease looks current
            assert ping_holder.lease_deadline() is None, "n1 stopped answering pings early"
            # the bench's lease: lapsed before the leader handed the lock on
            deadline = sync_holder.lease_deadline()
            assert deadline is not None
            assert deadline <= a_at
            assert first_a.token is not None
            assert second_a.token is not None
            assert first_b.token is not None
            assert second_b.token is not None
            assert second_a.token > first_a.token
            assert second_b.token > first_b.token
        finally:
            await asyncio.to_thread(partition.invoke, "stop-partition", None)
            await asyncio.gather(*(client.close() for client in clients))

    asyncio.run(asyncio.wait_for(scenario(), 300))
