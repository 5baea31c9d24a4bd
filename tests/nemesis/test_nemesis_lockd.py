"""Faults against the reference lock server on a netns cluster, judged by lockd's own Raft.

An isolated leader is replaced by the majority, a paused leader is replaced, and after each heal
the whole cluster follows one leader again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bench.backends.reference import ReferenceBackend, client_port, fetch_status
from bench.cluster import ClusterHandle
from lockbench.deploy import build_wheel
from nemesis.fault import FaultTarget
from nemesis.heal import heal_cluster
from nemesis.process import ProcessNemesis
from nemesis.remote import NodeLocks, on_nodes
from nemesis.schedule import NemesisRunner
from reference_impl.client.connection import Connection, ServerError
from tests.support.netns_cluster import netns_cluster
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and iptables"),
]
ELECTION_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def lockd_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClusterHandle, ReferenceBackend]]:
    backend = ReferenceBackend.from_options({"tick_ms": 50})
    backend.wheel = build_wheel()
    with netns_cluster(
        tmp_path_factory.mktemp("nemesis-lockd"), prefix="lbn", subnet="10.77.2.0/24"
    ) as cluster:
        try:
            backend.deploy(cluster)
            on_nodes(list(cluster.nodes), backend.start)
            yield cluster, backend
        finally:
            heal_cluster(cluster, backend)
            on_nodes(list(cluster.nodes), backend.stop)


def _new_leader(backend: ReferenceBackend, cluster: ClusterHandle, old: str | None) -> str:
    def other_leader() -> str | None:
        leader = backend.leader(cluster)
        return leader if leader is not None and leader != old else None

    return wait_until(
        other_leader, timeout=ELECTION_TIMEOUT_S, what=f"a leader other than {old}", interval=0.2
    )


def _agreed_leader(cluster: ClusterHandle) -> str:
    """Wait until every node names the same leader (the cluster is whole again)."""
    views: dict[str, object] = {}

    def agreed() -> str | None:
        statuses = on_nodes(list(cluster.nodes), fetch_status)
        views.clear()
        views.update(
            {n: (s.get("leader") if isinstance(s, dict) else None) for n, s in statuses.items()}
        )
        if len(set(views.values())) == 1 and None not in views.values():
            return str(next(iter(views.values())))
        return None

    return wait_until(
        agreed,
        timeout=ELECTION_TIMEOUT_S,
        what="the nodes agreeing on a leader",
        interval=0.2,
        details=lambda: views,
    )


async def _write_outcome(endpoint: str) -> str:
    """Ask one node, with no redirect-following, to open a session: a Raft write."""
    connection = await Connection.open(endpoint, timeout=3.0)
    try:
        args = {"client_id": "minority-probe", "seq": 1, "ttl": 5.0}
        result = await connection.call("open_session", args, timeout=3.0)
    except ServerError as exc:
        return f"refused: {exc.code}"
    except TimeoutError:
        return "no answer"
    finally:
        await connection.close()
    return f"served: {result}"


def _minority_side_refuses_writes(cluster: ClusterHandle, old: str) -> tuple[str, str]:
    """The isolated old leader steps down (CheckQuorum) and never serves a write."""
    node = cluster.node(old)

    def stepped_down() -> dict[str, Any] | None:
        status = fetch_status(node)
        return status if status is not None and status.get("role") != "leader" else None

    status = wait_until(
        stepped_down,
        timeout=ELECTION_TIMEOUT_S,
        what=f"{old} stepping down",
        interval=0.1,
        details=lambda: fetch_status(node),
    )
    outcome = asyncio.run(_write_outcome(f"{node.address}:{client_port(node)}"))
    return str(status.get("role")), outcome


def test_an_isolated_leader_is_replaced_by_the_majority_and_heal_reunites(
    lockd_cluster: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    cluster, backend = lockd_cluster
    old = _new_leader(backend, cluster, None)
    records: list[tuple[str, str, Any]] = []
    spec = {"fault": "partition", "shape": "isolate-leader", "schedule": {"at": [[0, 60]]}}
    runner = NemesisRunner([spec], cluster, backend, seed=7, record=lambda *r: records.append(r))
    replacement: dict[str, str] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        replacement["leader"] = await asyncio.to_thread(_new_leader, backend, cluster, old)
        role, outcome = await asyncio.to_thread(_minority_side_refuses_writes, cluster, old)
        replacement["old_role"], replacement["write"] = role, outcome
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        assert runner.heal_all() == []
    assert replacement["leader"] != old
    # The minority side stepped down and did not serve the write (it refuses or cannot commit).
    assert replacement["old_role"] != "leader"
    assert replacement["write"] in ("refused: not-leader", "refused: unavailable", "no answer"), (
        replacement["write"]
    )
    infos = {f: v for t, f, v in records if t == "info"}
    assert infos["leader"] == {"leader": old}
    others = sorted(n.name for n in cluster.nodes if n.name != old)
    assert infos["start-partition"]["grudge"][old] == others
    assert len(infos["start-partition"]["rules"][old]) == len(others)
    assert "stop-partition" in infos
    assert _agreed_leader(cluster) in [*others, old]


def test_a_paused_leader_is_replaced_and_resume_rejoins(
    lockd_cluster: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    cluster, backend = lockd_cluster
    old = _agreed_leader(cluster)
    nemesis = ProcessNemesis("pause", cluster, backend, NodeLocks())
    nemesis.invoke("start-pause", FaultTarget(nodes=(old,)))
    try:
        assert fetch_status(cluster.node(old)) is None  # a stopped process answers nothing
        assert _new_leader(backend, cluster, old) != old
    finally:
        nemesis.invoke("stop-pause", None)
    assert _agreed_leader(cluster) != ""
    assert fetch_status(cluster.node(old)) is not None
