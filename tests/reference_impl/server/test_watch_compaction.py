"""A watch resuming from a revision the bounded event log no longer keeps is refused with
WatchCompacted (naming the oldest kept revision), never silently given a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import WatchCompacted
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


def test_resume_from_a_compacted_revision_is_refused(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=1, extra_config={"event_log_capacity": 4})
    cluster.start_all()

    async def scenario() -> None:
        client = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            for _ in range(5):  # 10 events; only revisions 7..10 are kept
                await client.acquire("compact/x")
                await client.release("compact/x")
            with pytest.raises(WatchCompacted, match="oldest kept: 7"):
                async for _ in client.watch("compact/", from_revision=1):
                    pass
            kept = client.watch("compact/", from_revision=7)
            revisions = [(await kept.__anext__()).revision for _ in range(4)]
            await kept.aclose()
            assert revisions == [7, 8, 9, 10]
        finally:
            await client.close()

    asyncio.run(scenario())
