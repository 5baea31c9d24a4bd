"""Sessions expire on the leader's monotonic clock, so a wall-clock jump expires nobody; with
--unsafe-wallclock-expiry the same jump expires a healthy holder (the switch is exposed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime (Debian faketime) missing")
@pytest.mark.parametrize(("unsafe", "survives"), [((), True), (("wallclock-expiry",), False)])
def test_a_wall_clock_jump_on_the_leader(
    make_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
    unsafe: tuple[str, ...],
    survives: bool,
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    cluster = make_cluster(size=1, unsafe=list(unsafe), extra_env=env)
    cluster.start_all()

    async def scenario() -> None:
        client = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        observer = await AsyncLockClient.connect(cluster.endpoints, ttl=30.0)
        try:
            lease = await client.acquire("clock/x")
            offset.write_text("+3600\n")  # the node's wall clock jumps an hour ahead
            deadline = time.monotonic() + 3.0
            expired = False
            while time.monotonic() < deadline and not expired:
                await asyncio.sleep(0.2)
                owner = await observer.owner("clock/x")
                expired = owner.token != lease.token
            assert expired != survives, f"holder {'expired' if expired else 'survived'}"
            fresh = await AsyncLockClient.connect(cluster.endpoints, ttl=30.0)
            try:  # still serving either way
                await fresh.acquire("clock/after", timeout=5.0)
            finally:
                await fresh.close()
        finally:
            await client.close()
            await observer.close()

    asyncio.run(scenario())
