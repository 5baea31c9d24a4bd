"""netns clusters: real sshd per namespace, pinned host keys, and a teardown that leaves nothing."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import bench.cluster.netns as netns
from bench.cluster import NodeUnreachable, SshNode, load_inventory, open_cluster
from bench.cluster.netns import netns_down, netns_up
from lockbench.errors import ClusterError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node
from tests.bench.cluster.cluster_names import PREFIX, SUBNET, leftovers
from tests.support.netns_cluster import netns_cluster

pytestmark = pytest.mark.root
if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces and sshd per node", allow_module_level=True)


def test_up_makes_five_ssh_nodes_each_in_its_own_namespace(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "c"
    try:
        inventory = netns_up(cluster_dir, prefix=PREFIX, subnet=SUBNET)
        assert load_inventory(cluster_dir / "inventory.yaml") == inventory
        assert stat.S_IMODE(cluster_dir.stat().st_mode) == 0o700
        for key in (cluster_dir / "keys").glob("*"):
            if key.suffix != ".pub":
                assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        with open_cluster(inventory) as cluster:
            assert isinstance(cluster, Cluster)
            assert all(isinstance(node, Node) for node in cluster.nodes)
            assert cluster.capabilities == {
                "partition",
                "kill",
                "pause",
                "clock",
                "netem",
                "power-loss",
            }
            seen = on_each_node(
                "probe", cluster.nodes, lambda n: n.run("ip -4 -o addr show scope global").stdout
            )
        for spec in inventory.nodes:
            # each namespace sees only its own address: the network really is separate
            assert seen[spec.name].count("inet ") == 1
            assert spec.address in seen[spec.name]
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(f"{PREFIX}-n{i}" in names for i in range(1, 6))
    finally:
        removed = netns_down(cluster_dir)
    assert any("sshd" in item for item in removed)
    assert leftovers(PREFIX, cluster_dir) == []
    assert not cluster_dir.exists()


def test_connections_refuse_a_host_key_that_is_not_pinned(netns_cluster_dir: Path) -> None:
    inventory = load_inventory(netns_cluster_dir / "inventory.yaml")
    spec = inventory.nodes[0]
    other = inventory.nodes[1]
    # pin n2's key under n1's address: n1's real key no longer matches
    forged = netns_cluster_dir / "forged_known_hosts"
    n2_key = (netns_cluster_dir / "keys" / "n2_host_ed25519.pub").read_text().split()[:2]
    forged.write_text(f"{spec.address} {' '.join(n2_key)}\n")
    with pytest.raises(NodeUnreachable, match="host key differs"):
        SshNode(spec, forged).run("true")
    empty = netns_cluster_dir / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(NodeUnreachable, match="not pinned"):
        SshNode(other, empty).run("true")


def test_wrong_key_and_closed_port_are_named_errors(netns_cluster_dir: Path) -> None:
    inventory = load_inventory(netns_cluster_dir / "inventory.yaml")
    spec = inventory.nodes[0]
    stranger = netns_cluster_dir / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(NodeUnreachable, match=r"n1 \(root@10\.77\.1\.11:22\): authentication"):
        SshNode(dataclasses.replace(spec, key_file=str(stranger)), inventory.known_hosts).run(
            "true"
        )
    with pytest.raises(NodeUnreachable, match=r"n1 .*:2\): cannot connect"):
        SshNode(dataclasses.replace(spec, ssh_port=2), inventory.known_hosts).run("true")
    with pytest.raises(NodeUnreachable, match=r"key file .* not found"):
        SshNode(dataclasses.replace(spec, key_file="/nonexistent/key"), None).run("true")


def test_up_refuses_a_second_cluster_on_the_same_subnet(
    netns_cluster_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ClusterError, match="already"):
        netns_up(tmp_path / "second", prefix=PREFIX, subnet=SUBNET)
    with pytest.raises(ClusterError, match=r"subnet 10\.77\.1\.0/24 is already in use"):
        netns_up(tmp_path / "third", prefix=f"{PREFIX}x", subnet=SUBNET)
    assert not (tmp_path / "second").exists() or not any((tmp_path / "second").iterdir())
    assert leftovers(f"{PREFIX}x", tmp_path / "third") == []


@pytest.fixture
def netns_cluster_dir(tmp_path: Path) -> Iterator[Path]:
    cluster_dir = tmp_path / "pinned"
    netns_up(cluster_dir, prefix=PREFIX, subnet=SUBNET)
    try:
        yield cluster_dir
    finally:
        netns_down(cluster_dir)


CRASHING_UP = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import bench.cluster.netns as netns
    def crash(*args, **kwargs):
        os._exit(3)  # the process dies mid-up: sshds started, no inventory written
    netns._wait_for_ports = crash
    netns.netns_up(Path(sys.argv[1]), prefix=sys.argv[2], subnet=sys.argv[3])
    """
)


def test_down_cleans_up_after_an_up_that_died_half_way(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "crashed"
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_UP, str(cluster_dir), PREFIX, SUBNET],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert result.returncode == 3, result.stderr
        assert not (cluster_dir / "inventory.yaml").exists()
        assert leftovers(PREFIX, cluster_dir), "the crash should have left sshds and namespaces"
    finally:
        removed = netns_down(cluster_dir)
    assert any(item.startswith("namespace") for item in removed)
    assert leftovers(PREFIX, cluster_dir) == []


def test_failed_up_removes_what_it_made_before_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sshd(addresses: object, port: int, timeout: float) -> list[str]:
        return ["10.77.1.13"]

    monkeypatch.setattr(netns, "_wait_for_ports", no_sshd)
    cluster_dir = tmp_path / "failing"
    with pytest.raises(ClusterError, match=r"sshd did not start on 10\.77\.1\.13"):
        netns_up(cluster_dir, prefix=PREFIX, subnet=SUBNET)
    assert leftovers(PREFIX, cluster_dir) == []


def test_netns_cluster_context_tears_down_when_the_test_fails(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    # The raise must happen inside the cluster's context: its teardown is under test.
    with pytest.raises(Boom), netns_cluster(tmp_path, prefix=PREFIX, subnet=SUBNET) as cluster:  # noqa: PT012
        cluster.node("n1").run("true")
        raise Boom
    assert leftovers(PREFIX, tmp_path / f"cluster-{PREFIX}") == []
