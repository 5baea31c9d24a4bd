"""The vagrant inventory is built from `vagrant ssh-config` output and vagrant/nodes.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cluster.vagrant import (
    VAGRANT_DIR,
    VagrantNode,
    inventory_from_ssh_config,
    load_vagrant_nodes,
    parse_ssh_config,
)
from lockbench.errors import ClusterError

RECORDED = Path(__file__).parent / "data" / "vagrant_ssh_config.txt"


def test_inventory_uses_private_addresses_with_vagrants_user_and_keys(tmp_path: Path) -> None:
    nodes = load_vagrant_nodes()
    inventory = inventory_from_ssh_config(
        RECORDED.read_text(), nodes, tmp_path, tmp_path / "known_hosts"
    )
    assert inventory.runtime == "vagrant"
    assert [n.name for n in inventory.nodes] == ["n1", "n2", "n3", "n4", "n5"]
    assert [n.address for n in inventory.nodes] == [f"192.168.56.1{i}" for i in range(1, 6)]
    first = inventory.nodes[0]
    assert (first.user, first.ssh_port, first.data_dir) == ("vagrant", 22, "/var/lib/lockbench/n1")
    assert first.key_file is not None
    assert first.key_file.endswith("machines/n1/virtualbox/private_key")
    # a quoted IdentityFile with a space in its path
    assert inventory.nodes[2].key_file == (
        "/home/ada/my projects/lockbench/vagrant/.vagrant/machines/n3/virtualbox/private_key"
    )


def test_parser_keeps_hosts_apart_and_ignores_blank_lines() -> None:
    hosts = parse_ssh_config(RECORDED.read_text())
    assert sorted(hosts) == ["n1", "n2", "n3", "n4", "n5"]
    assert hosts["n2"]["port"] == "2200"
    assert hosts["n5"]["stricthostkeychecking"] == "no"


def test_vm_missing_from_ssh_config_is_named(tmp_path: Path) -> None:
    partial = RECORDED.read_text().split("\nHost n5")[0]
    with pytest.raises(ClusterError, match="n5: missing from `vagrant ssh-config`"):
        inventory_from_ssh_config(partial, load_vagrant_nodes(), tmp_path, None)


def test_nodes_file_lists_five_vms_on_one_private_network() -> None:
    nodes = load_vagrant_nodes()
    assert len(nodes) == 5
    assert nodes[0] == VagrantNode(name="n1", ip="192.168.56.11")
    assert len({n.ip.rsplit(".", 1)[0] for n in nodes}) == 1


@pytest.mark.process  # runs vagrant
@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed here")
def test_vagrantfile_validates() -> None:
    result = subprocess.run(
        ["vagrant", "validate"], cwd=VAGRANT_DIR, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
