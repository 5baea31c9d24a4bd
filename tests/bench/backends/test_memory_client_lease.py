"""The memory backend's client knows its lease like the reference client: send time + TTL.

While keepalives run the lease is safe; when they stop, the deadline that passed is reported,
the session counts as lost even before the service reaps it (a late keepalive never revives it),
a release is then unknown, and the next acquire runs in a fresh session.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.backends.memory import MemoryLockClient, MemoryLockService
from lockbench.protocols import Indeterminate, lease_deadline_of

TTL_S = 0.2


def test_the_lease_is_safe_while_keepalives_run() -> None:
    async def scenario() -> None:
        service = MemoryLockService()
        client = MemoryLockClient(service, ttl=TTL_S, process=0)
        await client.acquire("m/safe", timeout=1.0)
        await asyncio.sleep(TTL_S * 3)
        assert lease_deadline_of(client) is None
        await client.release("m/safe")
        await client.close()
        service.shutdown()

    asyncio.run(scenario())


def test_a_lapsed_lease_reports_its_deadline_and_makes_the_release_unknown() -> None:
    async def scenario() -> None:
        service = MemoryLockService()
        client = MemoryLockClient(service, ttl=TTL_S, process=0)
        first = await client.acquire("m/lapsed", timeout=1.0)
        stalled_at = time.monotonic()
        await client.stall(TTL_S * 2)
        deadline = lease_deadline_of(client)
        assert deadline is not None
        # keepalives ran every TTL/3 until the stall: the deadline is within that of stall + TTL
        assert stalled_at + TTL_S - TTL_S / 3 - 0.1 <= deadline <= stalled_at + TTL_S
        assert lease_deadline_of(client) == deadline
        with pytest.raises(Indeterminate):
            await client.release("m/lapsed")
        again = await client.acquire("m/lapsed", timeout=1.0)
        assert again.session != first.session
        assert lease_deadline_of(client) is None
        await client.close()
        service.shutdown()

    asyncio.run(scenario())
