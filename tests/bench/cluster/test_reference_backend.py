"""lockd as a backend: its config contract, its options, and five nodes electing a leader."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from bench.backends.reference import (
    ReferenceBackend,
    ReferenceOptions,
    fetch_status,
    lockd_config,
)
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.inventory import Inventory, NodeSpec
from bench.cluster.netns import netns_down, netns_up
from lockbench.daemon import daemon_pid, fetch_logs
from lockbench.deploy import build_wheel, deploy_project
from lockbench.errors import ConfigError
from lockbench.parallel import on_each_node
from tests.bench.cluster.cluster_names import PREFIX, SUBNET, leftovers

LEADER_TIMEOUT_S = 30.0


def _inventory(tmp_path: Path) -> Inventory:
    nodes = tuple(
        NodeSpec(name=f"n{i}", address=f"10.77.1.{10 + i}", data_dir=f"/srv/n{i}")
        for i in range(1, 4)
    )
    return Inventory(runtime="ssh", nodes=nodes, cluster_dir=tmp_path, known_hosts=None)


def test_lockd_config_follows_the_contract(tmp_path: Path) -> None:
    cluster = open_cluster(_inventory(tmp_path))
    options = ReferenceOptions(unsafe=("no-fsync",), fsync=False, tick_ms=20)
    document = yaml.safe_load(lockd_config(cluster, cluster.node("n2"), options))
    assert document == {
        "id": "n2",
        "data_dir": "/srv/n2/lockd",
        "members": {
            f"n{i}": {
                "host": f"10.77.1.{10 + i}",
                "peer_port": 7001,
                "client_port": 7000,
                "http_port": 7080,
            }
            for i in range(1, 4)
        },
        "tick_ms": 20,
        "fsync": False,
        "unsafe": ["no-fsync"],
    }


def test_local_nodes_get_ports_shifted_by_their_offset(tmp_path: Path) -> None:
    nodes = tuple(
        NodeSpec(
            name=f"n{i}",
            address="127.0.0.1",
            data_dir=str(tmp_path / f"n{i}"),
            port_offset=10 * (i - 1),
        )
        for i in range(1, 3)
    )
    cluster = open_cluster(Inventory("local", nodes, tmp_path, None))
    members = yaml.safe_load(lockd_config(cluster, cluster.node("n1"), ReferenceOptions()))
    assert members["members"]["n2"] == {
        "host": "127.0.0.1",
        "peer_port": 7002,  # n1 reaches n2's peer port (7011) through the link proxy
        "client_port": 7010,
        "http_port": 7090,
    }
    assert members["members"]["n1"]["peer_port"] == 7001  # its own entry: the real port


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tick": 5}, "unknown key(s) tick"),
        ({"unsafe": "no-fsync"}, "'unsafe' must be a list"),
        ({"fsync": "yes"}, "'fsync' must be true or false"),
        ({"tick_ms": 0}, "'tick_ms' must be a positive integer"),
    ],
)
def test_bad_backend_options_are_config_errors(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ReferenceBackend.from_options(options)


def wait_for_leader(backend: ReferenceBackend, cluster: ClusterHandle, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = backend.leader(cluster)
        if leader is not None:
            return leader
        time.sleep(0.2)
    statuses = {n.name: fetch_status(n) for n in cluster.nodes}
    raise AssertionError(f"no leader within {timeout} s: {statuses}")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and sshd")
def test_five_netns_nodes_elect_a_leader_and_teardown_leaves_nothing(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "e2e"
    try:
        with open_cluster(netns_up(cluster_dir, prefix=PREFIX, subnet=SUBNET)) as cluster:
            wheel = build_wheel()  # one build: other work may edit the tree meanwhile
            assert set(deploy_project(cluster, wheel).values()) == {True}
            assert set(deploy_project(cluster, wheel).values()) == {False}  # same: skipped
            backend = ReferenceBackend(ReferenceOptions(tick_ms=50), wheel=wheel)
            backend.deploy(cluster)  # installed already: writes the lockd configs
            on_each_node("start", cluster.nodes, backend.start)
            leader = wait_for_leader(backend, cluster, LEADER_TIMEOUT_S)
            # a majority agrees, over the bridge (heartbeats may take a moment to reach all)
            deadline = time.monotonic() + LEADER_TIMEOUT_S
            while True:
                statuses = {n.name: fetch_status(n) for n in cluster.nodes}
                agree = [name for name, s in statuses.items() if s and s.get("leader") == leader]
                if len(agree) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(agree) >= 3, statuses

            backend.kill(cluster.node(leader))
            assert daemon_pid(cluster.node(leader), "lockd") is None
            deadline = time.monotonic() + LEADER_TIMEOUT_S
            successor = None
            while time.monotonic() < deadline and successor in (None, leader):
                successor = backend.leader(cluster)
                time.sleep(0.2)
            assert successor not in (None, leader), {n.name: fetch_status(n) for n in cluster.nodes}

            backend.wipe(cluster.node(leader))
            node = cluster.node(leader)
            assert not node.run(f"test -e {node.data_dir}/lockd", check=False).ok

            logs = fetch_logs(cluster, tmp_path / "logs")
            assert {p.parent.name for p in logs} == {f"n{i}" for i in range(1, 6)}
            assert "serving clients" in (tmp_path / "logs" / "n1" / "lockd.log").read_text()
            assert backend.log_files(node) == [f"{node.data_dir}/lockd.log"]
    finally:
        removed = netns_down(cluster_dir)
    assert any("lockd" in item for item in removed)  # running servers were killed by down
    assert leftovers(PREFIX, cluster_dir) == []
