"""Sessions expire on the leader's monotonic clock, so a wall-clock jump expires nobody; with
--unsafe-wallclock-expiry the same jump expires a healthy holder (the switch is exposed). The jump
is the clock nemesis's own mechanism: the bench's wall-clock library and its offset file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lockbench.clock_preload import OFFSET_ENV, build_library, can_build_library
from reference_impl.client.async_client import AsyncLockClient
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


@pytest.mark.skipif(not can_build_library(), reason="no C compiler to build the wall-clock library")
@pytest.mark.parametrize(("unsafe", "survives"), [((), True), (("wallclock-expiry",), False)])
def test_a_wall_clock_jump_on_the_leader(
    make_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
    unsafe: tuple[str, ...],
    survives: bool,
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": str(build_library()), OFFSET_ENV: str(offset)}
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
