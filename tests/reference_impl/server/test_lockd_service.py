"""lockd's client-facing behaviour on a real three-node cluster: redirects, follower reads,
watches that resume, session expiry with hand-over, client elections, HTTP endpoints."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from reference_impl.client.async_client import AsyncLockClient, WatchEvent
from reference_impl.client.connection import Connection, ServerError
from reference_impl.client.errors import AcquireTimeout, NotHolder, SessionExpired
from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalCluster]:
    """Every test runs on both event loops lockd can use (docs/reference-server.md)."""
    loop = request.param
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed (scripts/setup.sh installs it)")
    cluster = LocalCluster(
        tmp_path_factory.mktemp(f"lockd3-{loop}"),
        size=3,
        base_port=free_port_block(30),
        extra_args=["--event-loop", loop],
    )
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def follower_of(cluster: LocalCluster) -> str:
    leader = cluster.wait_for_leader()
    return next(n.endpoint for n in cluster.nodes if n.id != leader)


def run(coro_factory: Callable[[], object]) -> None:
    asyncio.run(coro_factory())  # type: ignore[arg-type]


def test_writes_to_a_follower_are_redirected_to_the_leader(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        connection = await Connection.open(follower_of(cluster), timeout=2.0)
        try:
            with pytest.raises(ServerError) as excinfo:
                await connection.call(
                    "open_session", {"client_id": "c", "seq": 1, "ttl": 5}, timeout=2.0
                )
        finally:
            await connection.close()
        assert excinfo.value.code == "not-leader"
        leader = cluster.node(cluster.wait_for_leader())
        assert excinfo.value.leader == leader.endpoint

    run(scenario)


def test_follower_reads_see_the_latest_grant(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        client = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            for round_ in range(5):
                lease = await client.acquire(f"reads/{round_}")
                for endpoint in cluster.endpoints:  # ReadIndex on every node, no stale answer
                    owner = await client.owner(f"reads/{round_}", endpoint=endpoint)
                    assert owner.token == lease.token
                    assert await client.check_token(f"reads/{round_}", lease.token)
                await client.release(f"reads/{round_}")
                assert not await client.check_token(f"reads/{round_}", lease.token)
        finally:
            await client.close()

    run(scenario)


def test_release_of_a_lock_not_held_and_try_acquire_timeout_are_definite(
    cluster: LocalCluster,
) -> None:
    async def scenario() -> None:
        a = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        b = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            with pytest.raises(NotHolder):
                await a.release("errors/x")
            await a.acquire("errors/x")
            started = time.monotonic()
            with pytest.raises(AcquireTimeout):
                await b.acquire("errors/x", timeout=0.5)
            assert 0.4 < time.monotonic() - started < 3.0
            owner = await a.owner("errors/x")
            assert owner.waiters == (), "the timed-out waiter was left in the queue"
        finally:
            await a.close()
            await b.close()

    run(scenario)


def test_watch_resumes_after_a_dropped_connection_without_loss_or_duplicates(
    cluster: LocalCluster,
) -> None:
    async def scenario() -> None:
        writer = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        watcher = await AsyncLockClient.connect([follower_of(cluster)], ttl=5.0)
        received: list[WatchEvent] = []
        try:
            stream = watcher.watch("watch/")
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)
            tokens = []
            for i in range(10):
                tokens.append((await writer.acquire(f"watch/{i % 3}")).token)
                await writer.release(f"watch/{i % 3}")
                if i == 4:
                    for connection in list(watcher._connections.values()):
                        connection._writer.transport.abort()  # a network drop, mid-stream
            received.append(await first)
            while len(received) < 20:
                received.append(await asyncio.wait_for(stream.__anext__(), 10))
            await stream.aclose()
        finally:
            await writer.close()
            await watcher.close()
        revisions = [e.revision for e in received]
        assert revisions == list(range(revisions[0], revisions[0] + 20))
        assert [e.kind for e in received] == ["acquired", "released"] * 10
        assert [e.token for e in received if e.kind == "acquired"] == tokens

    run(scenario)


def test_an_expired_holder_loses_the_lock_to_the_next_waiter(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        lost: list[str] = []
        stalled = await AsyncLockClient.connect(
            cluster.endpoints, ttl=1.5, on_session_lost=lost.append
        )
        waiter = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            first = await stalled.acquire("expiry/x")
            # The holder stops heartbeating (a long GC pause) while another process waits.
            stall = asyncio.ensure_future(stalled.stall_keepalive(6.0))
            started = time.monotonic()
            second = await asyncio.wait_for(waiter.acquire("expiry/x"), 10)
            waited = time.monotonic() - started
            assert second.token > first.token
            assert 1.0 < waited < 4.0, f"expiry took {waited:.2f}s for a 1.5s TTL"
            # The stalled client knows from its safe deadline alone, before hearing anything.
            assert not stalled.session_alive()
            assert lost
            with pytest.raises(SessionExpired):
                await stalled.acquire("expiry/y")
            stall.cancel()
        finally:
            await stalled.close()
            await waiter.close()

    run(scenario)


def test_client_election_campaign_observe_resign(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        a = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        b = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            observed = b.observe("db-primary")
            assert await observed.__anext__() is None
            lease_a = await a.campaign("db-primary", "host-a")
            leader = await asyncio.wait_for(observed.__anext__(), 5)
            assert leader is not None
            assert leader.value == "host-a"
            assert leader.token == lease_a.token
            b_campaign = asyncio.ensure_future(b.campaign("db-primary", "host-b"))
            await asyncio.sleep(0.2)
            assert not b_campaign.done()
            await a.resign("db-primary")
            lease_b = await asyncio.wait_for(b_campaign, 5)
            assert lease_b.token > lease_a.token
            await observed.aclose()
        finally:
            await a.close()
            await b.close()

    run(scenario)


def test_http_endpoints_report_role_and_metrics(cluster: LocalCluster) -> None:
    leader = cluster.node(cluster.wait_for_leader())
    base = f"http://{leader.host}:{leader.http_port}"
    with urllib.request.urlopen(base + "/status") as response:
        status = json.loads(response.read())
    assert status["id"] == leader.id
    assert status["role"] == "leader"
    assert status["commit_index"] >= status["applied_index"] >= 1
    with urllib.request.urlopen(base + "/health") as response:
        assert response.status == 200
    with urllib.request.urlopen(base + "/metrics") as response:
        metrics = response.read().decode()
    for name in (
        "lockd_raft_is_leader 1",
        f'lockd_raft_leader{{leader="{leader.id}"}} 1',
        'lockd_raft_role{role="leader"} 1',
        "lockd_raft_term ",
        "lockd_raft_fsync_seconds_bucket",
        "lockd_raft_proposal_seconds_count",
        "lockd_raft_elections_started_total",
        "lockd_sessions ",
        "lockd_locks_held ",
        "lockd_waiters ",
        "lockd_watchers ",
    ):
        assert name in metrics, f"{name!r} missing from /metrics"
    if shutil.which("promtool"):  # the exposition format itself (and its lint rules)
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
