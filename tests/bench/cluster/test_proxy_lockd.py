"""Five lockd nodes on the local runtime, partitioned through the link proxy, no root needed.

Deployed by the reference backend (which starts the proxy and points every node's peers at it),
so this proves the whole path: per-node member tables, the proxy, the controller. Ports
23200-23320 (this task's range 23000-23999).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.backends.reference import (
    ReferenceBackend,
    ReferenceOptions,
    config_path,
    fetch_status,
    peer_port,
)
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.link_faults import LinkFaultController
from bench.cluster.local import local_down, local_up
from bench.cluster.proxy import Link
from lockbench.parallel import on_each_node
from tests.support.waiting import wait_until

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

BASE_OFFSET = 16200
ELECTION_TIMEOUT_S = 20.0

Statuses = dict[str, dict[str, Any] | None]


@pytest.fixture(scope="module")
def lockd_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClusterHandle, LinkFaultController]]:
    """One deployed, running cluster for the module (deployment costs most of the time)."""
    cluster_dir = tmp_path_factory.mktemp("lockd") / "c"
    try:
        with open_cluster(local_up(cluster_dir, base_offset=BASE_OFFSET)) as cluster:
            assert cluster.link_faults is not None
            backend = ReferenceBackend(ReferenceOptions(tick_ms=50))
            backend.deploy(cluster)
            on_each_node("start", cluster.nodes, backend.start)
            yield cluster, cluster.link_faults
    finally:
        local_down(cluster_dir)


def statuses(cluster: ClusterHandle) -> Statuses:
    return {node.name: fetch_status(node) for node in cluster.nodes}


def wait_for(
    cluster: ClusterHandle, what: str, found: Callable[[Statuses], str | None]
) -> tuple[str, Statuses]:
    """Poll every node's /status until ``found`` names a node; fail with the last statuses."""
    last: list[Statuses] = []

    def named() -> tuple[str, Statuses] | None:
        last[:] = [statuses(cluster)]
        name = found(last[0])
        return (name, last[0]) if name is not None else None

    return wait_until(
        named, timeout=ELECTION_TIMEOUT_S, what=what, interval=0.2, details=lambda: last
    )


def leader_of(seen: Statuses, among: set[str], needed: int) -> str | None:
    """The node that leads and that at least ``needed`` of ``among`` follow, if any."""
    for name in among:
        status = seen[name]
        if not status or status.get("role") != "leader":
            continue
        followers = [n for n in among if (seen[n] or {}).get("leader") == name]
        if len(followers) >= needed:
            return name
    return None


def test_each_node_reaches_its_peers_through_its_own_proxy_ports(
    lockd_cluster: tuple[ClusterHandle, LinkFaultController],
) -> None:
    cluster, link_faults = lockd_cluster
    config = yaml.safe_load(Path(config_path(cluster.node("n2"))).read_text())
    members = config["members"]
    assert members["n2"]["peer_port"] == peer_port(cluster.node("n2"))  # its own: real port
    assert members["n1"]["peer_port"] == link_faults.proxy_port("n2", "n1")
    assert members["n5"]["peer_port"] == link_faults.proxy_port("n2", "n5")
    everyone = {node.name for node in cluster.nodes}
    wait_for(cluster, "leader", lambda seen: leader_of(seen, everyone, 5))
    carried = {s.link for s in link_faults.state().links if s.bytes_delivered > 0}
    assert Link("n2", "n1") in carried
    assert Link("n1", "n2") in carried


def test_isolating_the_leader_elects_another_and_healing_rejoins_one_cluster(
    lockd_cluster: tuple[ClusterHandle, LinkFaultController],
) -> None:
    cluster, link_faults = lockd_cluster
    everyone = {node.name for node in cluster.nodes}
    old, _ = wait_for(cluster, "leader", lambda seen: leader_of(seen, everyone, 3))
    others = everyone - {old}

    grudge = {old: others, **{name: {old} for name in others}}
    state = link_faults.partition(grudge)
    assert len(state.blocked()) == 8  # the leader's 4 links, both directions

    new, seen = wait_for(cluster, "new leader", lambda seen: leader_of(seen, others, 3))
    assert new != old
    new_term = (seen[new] or {}).get("term", 0)

    # check-quorum: the isolated leader hears no majority and steps down
    wait_for(
        cluster,
        "step-down",
        lambda seen: old if (seen[old] or {}).get("role") != "leader" else None,
    )

    link_faults.heal()
    leader, seen = wait_for(cluster, "one cluster", lambda seen: leader_of(seen, everyone, 5))
    assert [n for n, s in seen.items() if (s or {}).get("role") == "leader"] == [leader]
    assert (seen[leader] or {}).get("term", 0) >= new_term
