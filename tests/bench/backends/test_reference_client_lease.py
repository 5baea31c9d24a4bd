"""The lockd adapter says since when its lease may have lapsed: the client library's safe deadline.

One real lockd on ports 26000-26002 (task L's range). While keepalives are acknowledged the lease
is safe (None); once they stop for longer than the TTL, the adapter reports the safe deadline
that passed, which is what the runner records as ``lease-lost``'s ``since``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bench.backends.reference_client import open_reference_client
from lockbench.protocols import LeaseAwareClient, lease_deadline_of
from reference_impl.client.async_client import DEFAULT_DRIFT_BOUND
from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

TTL_S = 1.0
SLACK_S = 0.3  # a keepalive round trip on a loaded machine


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("lockd-lease"), size=1, base_port=free_port_block(10)
    )
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def test_the_lease_is_safe_while_keepalives_are_acknowledged(single: LocalCluster) -> None:
    async def scenario() -> None:
        endpoint = single.endpoints[0]
        client = await open_reference_client([endpoint], endpoint, ttl=TTL_S, process=1)
        try:
            assert isinstance(client, LeaseAwareClient)
            await client.acquire("lease/safe", timeout=2.0)
            await asyncio.sleep(TTL_S * 1.5)  # longer than a TTL: keepalives renewed it
            assert lease_deadline_of(client) is None
            await client.release("lease/safe")
        finally:
            await client.close()

    asyncio.run(scenario())


def test_stopped_keepalives_report_the_safe_deadline_that_passed(single: LocalCluster) -> None:
    async def scenario() -> None:
        endpoint = single.endpoints[0]
        client = await open_reference_client([endpoint], endpoint, ttl=TTL_S, process=2)
        try:
            await client.acquire("lease/lapsed", timeout=2.0)
            stalled_at = time.monotonic()
            await client.stall(TTL_S * 1.5)
            deadline = lease_deadline_of(client)
            assert deadline is not None
            # the last acknowledged keepalive was sent at most one keepalive interval (TTL/3,
            # plus a round trip) before the stall: the deadline is TTL x 0.99 after it
            latest = stalled_at + TTL_S * (1 - DEFAULT_DRIFT_BOUND)
            assert latest - TTL_S / 3 - SLACK_S <= deadline <= latest <= time.monotonic()
            # asking again gives the same moment: it is a fact about the past
            assert lease_deadline_of(client) == deadline
        finally:
            await client.close()

    asyncio.run(scenario())
