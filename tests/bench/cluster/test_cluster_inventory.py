"""Inventories round-trip, fill in defaults and reject mistakes with the file, key and reason."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench.cluster.inventory import Inventory, NodeSpec, load_inventory, save_inventory
from lockbench.errors import ConfigError


def test_saved_inventory_loads_back_identical_and_private(tmp_path: Path) -> None:
    inventory = Inventory(
        runtime="ssh",
        nodes=(
            NodeSpec(name="n1", address="10.0.0.1", key_file="/k/id", data_dir="/d/n1"),
            NodeSpec(name="n2", address="10.0.0.2", ssh_port=2222, user="ops", port_offset=10),
        ),
        cluster_dir=tmp_path,
        known_hosts=tmp_path / "known_hosts",
    )
    path = tmp_path / "inventory.yaml"
    save_inventory(inventory, path)
    assert load_inventory(path) == inventory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_node_defaults_follow_the_vm_layout(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("runtime: ssh\nnodes:\n  - {name: a, address: 192.0.2.1, key_file: keys/id}\n")
    node = load_inventory(path).nodes[0]
    assert (node.ssh_port, node.user, node.port_offset) == (22, "root", 0)
    assert node.data_dir == "/var/lib/lockbench/a"
    assert node.key_file == str(tmp_path / "keys" / "id")  # relative to the inventory file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runtime: ssh\n", "missing key 'nodes'"),
        ("nodes: []\n", "missing key 'runtime'"),
        ("runtime: cloud\nnodes: [{name: a, address: b}]\n", "key 'runtime' must be one of"),
        ("runtime: ssh\nnodes: [{name: a}]\n", "node a: missing key 'address'"),
        ("runtime: ssh\nnodes: [{name: a, address: b, ssh_port: x}]\n", "'ssh_port' must be"),
        ("runtime: ssh\nnodes: [{name: a, address: b, ssh_port: 0}]\n", "1-65535"),
        ("runtime: ssh\nnodes: [{name: a, address: b, colour: red}]\n", "unknown key(s) colour"),
        ("runtime: ssh\nnodes: [{name: a, address: b}, {name: a, address: c}]\n", "duplicate"),
        ("runtime: ssh\nnodes: [{name: a, address: b}, {name: c, address: b}]\n", "port_offset"),
        ("runtime: ssh\nnodes: [one, two]\n", "nodes[0]: must be a mapping"),
        ("runtime: [ssh\n", "not valid YAML"),
        ("- just a list\n", "a mapping with keys runtime and nodes"),
    ],
)
def test_malformed_inventory_names_file_key_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_missing_inventory_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read inventory"):
        load_inventory(tmp_path / "absent.yaml")
