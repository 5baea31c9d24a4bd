"""Fencing tokens keep increasing when the whole cluster restarts (they are Raft indices);
with --unsafe-reuse-tokens a restart hands out tokens seen before (the switch is exposed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


async def _grant_tokens(endpoints: list[str], count: int) -> list[int]:
    client = await AsyncLockClient.connect(endpoints, ttl=5.0)
    try:
        tokens = []
        for _ in range(count):
            tokens.append((await client.acquire("restart/x")).token)
            await client.release("restart/x")
        return tokens
    finally:
        await client.close()


@pytest.mark.parametrize(("unsafe", "reused"), [((), False), (("reuse-tokens",), True)])
def test_tokens_after_a_full_restart(
    make_cluster: Callable[..., LocalCluster], unsafe: tuple[str, ...], reused: bool
) -> None:
    cluster = make_cluster(size=1, unsafe=list(unsafe))
    cluster.start_all()
    before = asyncio.run(_grant_tokens(cluster.endpoints, 3))
    cluster.kill("n1")
    cluster.start("n1")
    cluster.wait_for_leader()
    after = asyncio.run(_grant_tokens(cluster.endpoints, 3))
    assert before == sorted(set(before))
    if reused:
        assert set(after) & set(before), f"no token reused: {before} then {after}"
    else:
        assert min(after) > max(before), f"token went backwards: {before} then {after}"
