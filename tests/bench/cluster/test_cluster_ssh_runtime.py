"""The ssh runtime adopts any SSH hosts (here: netns nodes) and names the host that fails."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from bench.cluster import ClusterHandle, load_inventory, open_cluster
from bench.cluster.ssh_hosts import ssh_up
from bench.cluster.status import cluster_status
from bench.commands import cluster as cluster_command
from lockbench.errors import ClusterError

pytestmark = pytest.mark.root


def _user_inventory(
    netns: ClusterHandle, path: Path, *, extra: dict[str, str] | None = None
) -> Path:
    nodes: list[Mapping[str, str | None]] = [
        {
            "name": s.name,
            "address": s.address,
            "key_file": s.key_file,
            "data_dir": f"{s.data_dir}/adopted",
        }
        for s in netns.inventory.nodes
    ]
    if extra:
        nodes.append(extra)
    path.write_text(yaml.safe_dump({"runtime": "ssh", "nodes": nodes}))
    return path


def test_ssh_up_pins_host_keys_on_first_use_and_checks_every_host(
    netns: ClusterHandle, tmp_path: Path
) -> None:
    inventory = ssh_up(_user_inventory(netns, tmp_path / "hosts.yaml"), tmp_path / "adopted")
    assert inventory.runtime == "ssh"
    assert inventory.known_hosts == tmp_path / "adopted" / "known_hosts"
    # the keys seen at up are the keys netns_up generated
    assert sorted(inventory.known_hosts.read_text().split("\n")) == sorted(
        netns.inventory.known_hosts.read_text().split("\n")  # type: ignore[union-attr]
    )
    assert load_inventory(tmp_path / "adopted" / "inventory.yaml") == inventory
    with open_cluster(inventory) as cluster:
        statuses = cluster_status(cluster)
    assert all(s.reachable for s in statuses)
    assert all(
        netns.node(s.name).run(f"test -d {netns.node(s.name).data_dir}/adopted").ok
        for s in statuses
    )


def test_ssh_up_names_an_unreachable_host_and_writes_no_inventory(
    netns: ClusterHandle, tmp_path: Path
) -> None:
    hosts = _user_inventory(
        netns, tmp_path / "hosts.yaml", extra={"name": "n6", "address": "10.77.1.16"}
    )
    with pytest.raises(ClusterError, match=r"n6 \(10\.77\.1\.16:22\): unreachable"):
        ssh_up(hosts, tmp_path / "adopted")
    assert not (tmp_path / "adopted" / "inventory.yaml").exists()


def test_status_reports_a_node_whose_sshd_is_gone(
    netns: ClusterHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cluster_command.register(parser.add_subparsers())
    inventory_file = str(netns.inventory.cluster_dir / "inventory.yaml")
    args = parser.parse_args(["cluster", "status", "--inventory", inventory_file])
    assert args.func(args) == 0
    assert capsys.readouterr().out.count(" ok ") == 5
    sshd_pid = (netns.inventory.cluster_dir / "sshd" / "n5.pid").read_text().strip()
    netns.node("n1").run(f"kill {sshd_pid}")  # n5's sshd (namespaces share the process table)
    assert args.func(args) == 4
    out = capsys.readouterr().out
    assert out.count(" ok ") == 4
    assert "n5" in out
    assert "UNREACHABLE" in out
    assert "10.77.1.15:22" in out
