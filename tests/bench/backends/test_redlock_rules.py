"""The Redlock client against its specification, rule by rule, on five real Redis servers.

The rules are numbered as in bench.backends.redis_locks' docstring (the Redis documentation's
"Distributed Locks with Redis"). Faults are the bench's own: a paused server is SIGSTOPped
through the backend, exactly as the pause nemesis does it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.backends.redis_locks import (
    CLOCK_DRIFT_FACTOR,
    DRIFT_FIXED_MS,
    RedlockClient,
    RedlockSettings,
    acquired,
    drift_ms,
    quorum,
    validity_ms,
)
from bench.backends.redis_servers import redis_endpoint
from bench.backends.redlock import RedlockBackend
from bench.cluster import ClusterHandle
from lockbench.errors import ConfigError
from lockbench.protocols import DefiniteFailure, Indeterminate, Node
from tests.bench.backends.redis_cluster import running

pytestmark = pytest.mark.process  # real servers (etcd, redis-server) or netns nodes

LOCK = "lock/rules"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    backend = RedlockBackend()
    with running(backend, tmp_path_factory.mktemp("redlock")) as handle:
        handle.backend = backend  # type: ignore[attr-defined]
        yield handle


@pytest.fixture
def servers(cluster: ClusterHandle) -> list[redis.Redis]:
    """Direct connections to the five servers, emptied before each test."""
    connections = []
    for node in cluster.nodes:
        host, port = redis_endpoint(node).rsplit(":", 1)
        connection = redis.Redis(host=host, port=int(port), decode_responses=True)
        connection.flushall()
        connection.config_resetstat()
        connections.append(connection)
    return connections


def client(
    cluster: ClusterHandle,
    *,
    ttl: float = 2.0,
    instance_timeout: float = 1.0,
    retry_delay: float = 0.2,
) -> RedlockClient:
    """A client; unless a test is about them, instance timeouts are long enough that a loaded
    machine does not turn an answer into a timeout."""
    endpoints = [redis_endpoint(node) for node in cluster.nodes]
    settings = RedlockSettings(instance_timeout=instance_timeout, retry_delay=retry_delay)
    return RedlockClient(endpoints, ttl=ttl, process=0, settings=settings)


def value(server: redis.Redis) -> str | None:
    """The lock's value on one server (the connections decode replies to str)."""
    found = server.get(LOCK)
    return None if found is None else str(found)


def resume_and_settle(
    cluster: ClusterHandle, nodes: list[Node], servers: list[redis.Redis]
) -> None:
    """Resume paused servers, let them run what was queued for them meanwhile (late SETs and
    unlocks from closed connections), then empty every server for the next test."""
    backend = cluster.backend  # type: ignore[attr-defined]
    for node in nodes:
        backend.resume(node)
    time.sleep(0.3)
    for server in servers:
        server.flushall()


def evals(server: redis.Redis) -> int:
    stats = server.info("commandstats").get("cmdstat_eval")
    return int(stats["calls"]) if stats else 0


# -- the arithmetic of rules 2 and 3 ----------------------------------------------------------


def test_quorum_is_a_majority() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_validity_is_the_ttl_less_elapsed_time_and_drift() -> None:
    assert CLOCK_DRIFT_FACTOR == 0.01
    assert DRIFT_FIXED_MS == 2
    assert drift_ms(10_000) == 102
    assert validity_ms(10_000, 100) == 10_000 - 100 - 102
    assert acquired([True, True, True, False, None], 10_000, 9_897)
    assert not acquired([True, True, True, False, None], 10_000, 9_898)  # no validity left
    assert not acquired([True, True, False, False, None], 10_000, 1)  # no majority


# -- against the servers ----------------------------------------------------------------------


def test_rule_1_the_same_key_and_value_with_the_ttl_on_every_instance(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        locks = client(cluster, ttl=2.0)
        grant = await locks.acquire(LOCK, timeout=1)
        values = {value(server) for server in servers}
        assert len(values) == 1
        assert str(next(iter(values))).startswith(f"{grant.session}/")
        assert all(1500 < server.pttl(LOCK) <= 2000 for server in servers)
        await locks.close()

    asyncio.run(scenario())


def test_rule_2_a_majority_is_needed(cluster: ClusterHandle, servers: list[redis.Redis]) -> None:
    async def scenario() -> None:
        for server in servers[:3]:
            server.set(LOCK, "other", px=10_000)
        locks = client(cluster, retry_delay=0.05)
        with pytest.raises(DefiniteFailure, match="not acquired"):
            await locks.acquire(LOCK, timeout=0.3)
        servers[2].delete(LOCK)  # now only two instances are taken: three are free
        grant = await locks.acquire(LOCK, timeout=0.3)
        assert [value(server) for server in servers[:2]] == ["other", "other"]
        assert all(str(value(server)).startswith(f"{grant.session}/") for server in servers[2:])
        await locks.close()

    asyncio.run(scenario())


def test_rule_2_and_3_a_majority_set_too_late_is_no_lock(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    """Three servers paused 0.5 s: their SETs succeed, but after the 0.4 s TTL's validity."""
    backend = cluster.backend  # type: ignore[attr-defined]
    slow = cluster.nodes[:3]

    def pause_a_while() -> None:
        for node in slow:
            backend.pause(node)
        time.sleep(0.5)
        for node in slow:
            backend.resume(node)

    async def scenario() -> None:
        locks = client(cluster, ttl=0.4, instance_timeout=2.0, retry_delay=5.0)
        pauser = threading.Thread(target=pause_a_while)
        pauser.start()
        await asyncio.sleep(0.1)
        try:
            with pytest.raises(DefiniteFailure, match="not acquired"):
                await locks.acquire(LOCK, timeout=1.0)
        finally:
            await asyncio.to_thread(pauser.join)
        assert all(value(server) is None for server in servers)  # rule 4: unlocked again
        await locks.close()

    asyncio.run(scenario())


def test_rule_4_a_failed_attempt_unlocks_every_instance_even_unlocked_ones(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        for server in servers[:3]:
            server.set(LOCK, "other", px=10_000)
        locks = client(cluster, retry_delay=10.0)
        with pytest.raises(DefiniteFailure):
            await locks.acquire(LOCK, timeout=0.5)  # one attempt: the retry delay is longer
        # every instance got the unlock script, the three it could not lock too
        assert [evals(server) for server in servers] == [1, 1, 1, 1, 1]
        assert [value(server) for server in servers] == ["other"] * 3 + [None, None]
        await locks.close()

    asyncio.run(scenario())


def test_rule_4_a_silent_majority_leaves_the_outcome_unknown(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    """SETs to three paused servers may land later, and so may the unlocks: not a fail."""
    backend = cluster.backend  # type: ignore[attr-defined]
    for node in cluster.nodes[:3]:
        backend.pause(node)
    try:

        async def scenario() -> None:
            locks = client(cluster, instance_timeout=0.05)
            with pytest.raises(Indeterminate, match="did not answer the unlock"):
                await locks.acquire(LOCK, timeout=0.5)
            for instance in locks.instances:
                await instance.close()

        asyncio.run(scenario())
    finally:
        resume_and_settle(cluster, list(cluster.nodes[:3]), servers)


def test_rule_4_a_silent_minority_is_no_lock(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    backend = cluster.backend  # type: ignore[attr-defined]
    for server in servers[1:3]:
        server.set(LOCK, "other", px=10_000)
    backend.pause(cluster.nodes[0])
    try:

        async def scenario() -> None:
            locks = client(cluster, instance_timeout=0.05, retry_delay=10.0)
            with pytest.raises(DefiniteFailure):
                await locks.acquire(LOCK, timeout=0.5)
            for instance in locks.instances:
                await instance.close()

        asyncio.run(scenario())
    finally:
        resume_and_settle(cluster, [cluster.nodes[0]], servers)


def test_rule_5_retries_after_random_delays_until_the_timeout(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    for server in servers[:3]:
        server.set(LOCK, "other", px=10_000)

    async def scenario() -> None:
        locks = client(cluster, retry_delay=0.1)
        started = time.monotonic()
        with pytest.raises(DefiniteFailure):
            await locks.acquire(LOCK, timeout=1.0)
        assert time.monotonic() - started <= 1.2
        attempts = locks.last_attempts
        assert len(attempts) >= 5
        delays = [delay for _, delay in attempts]
        assert all(0.05 <= d <= 0.15 for d in delays)
        assert len(set(delays)) == len(delays)  # jittered, not a fixed period
        for (start, delay), (following, _) in itertools.pairwise(attempts):
            assert following - start >= delay
        await locks.close()

    asyncio.run(scenario())


def test_rule_6_release_deletes_only_this_clients_value_on_every_instance(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        locks = client(cluster)
        await locks.acquire(LOCK, timeout=1)
        servers[4].set(LOCK, "other")  # someone else's value on one instance
        await locks.release(LOCK)
        assert [value(server) for server in servers] == [None] * 4 + ["other"]
        assert [evals(server) for server in servers] == [1] * 5

        await locks.acquire(LOCK, timeout=1)
        for server in servers[:3]:
            server.delete(LOCK)  # a majority lost the key (a restart without persistence)
        with pytest.raises(Indeterminate, match="lost"):
            await locks.release(LOCK)
        await locks.close()

    asyncio.run(scenario())


def test_rule_7_extension_keeps_the_lock_and_a_stall_loses_it(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        locks = client(cluster, ttl=0.6)
        grant = await locks.acquire(LOCK, timeout=1)
        await asyncio.sleep(1.5)  # 2.5 TTLs: held only because it was extended
        assert all(str(value(server)).startswith(f"{grant.session}/") for server in servers)
        assert locks.lease_deadline() is None
        await locks.stall(1.0)  # no extensions: the keys expire
        assert all(value(server) is None for server in servers)
        deadline = locks.lease_deadline()
        assert deadline is not None
        assert deadline < time.monotonic() - 0.3
        with pytest.raises(Indeterminate):
            await locks.release(LOCK)
        await locks.close()

    asyncio.run(scenario())


def test_validity_deadline_allows_for_drift(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        locks = client(cluster, ttl=1.0)
        before = time.monotonic()
        await locks.acquire(LOCK, timeout=1)
        await locks.stall(1.2)
        deadline = locks.lease_deadline()
        assert deadline is not None
        assert before <= deadline <= before + 1.0 - drift_ms(1000) / 1000 + 0.05
        await locks.close()

    asyncio.run(scenario())


def test_backend_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="appendfsync must be one of"):
        RedlockBackend.from_options({"appendonly": True, "appendfsync": "sometimes"})
    with pytest.raises(ConfigError, match="unknown key"):
        RedlockBackend.from_options({"fsync": True})
    with pytest.raises(ConfigError, match="instance_timeout must be positive"):
        RedlockBackend.from_options({"instance_timeout": 0})
    backend = RedlockBackend.from_options({"instance_timeout": 0.02, "appendonly": True})
    assert backend.settings.instance_timeout == 0.02
    assert backend.server_options.appendonly


def test_killed_servers_refuse_connections_so_a_failed_acquire_is_definite(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    """A server that is not running certainly ran nothing: no unknown outcome from it."""
    backend = cluster.backend  # type: ignore[attr-defined]
    killed = cluster.nodes[:3]
    for node in killed:
        backend.kill(node)
    try:

        async def scenario() -> None:
            locks = client(cluster, retry_delay=10.0)
            with pytest.raises(DefiniteFailure, match="not acquired"):
                await locks.acquire(LOCK, timeout=0.5)
            await locks.close()

        asyncio.run(scenario())
    finally:
        for node in killed:
            backend.start(node)
    assert all(server.ping() for server in servers)


def test_rule_7_an_extension_that_finds_a_majority_without_the_value_marks_the_lock_lost(
    cluster: ClusterHandle, servers: list[redis.Redis]
) -> None:
    async def scenario() -> None:
        locks = client(cluster, ttl=0.9)
        await locks.acquire(LOCK, timeout=1)
        for server in servers[:3]:
            server.delete(LOCK)  # what a restart without persistence does to them
        lost_by = time.monotonic() + 0.4  # the next extension runs within TTL/3
        await asyncio.sleep(0.45)
        deadline = locks.lease_deadline()
        assert deadline is not None
        assert deadline <= lost_by
        with pytest.raises(Indeterminate):
            await locks.release(LOCK)
        await locks.close()

    asyncio.run(scenario())
