"""The ssh runtime: any hosts the user lists in an inventory file (``runtime: ssh``).

``ssh_up`` copies the user's inventory into the cluster directory, pins host keys (the user's
known_hosts if the inventory names one, else the keys seen now: trust on first use, recorded in
the cluster's own known_hosts), and checks every host answers and its data_dir is writable.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from bench.cluster.handle import ClusterHandle
from bench.cluster.inventory import Inventory, load_inventory, save_inventory
from bench.cluster.keys import scan_host_key
from bench.cluster.ssh_node import SshNode
from lockbench.errors import ConfigError
from lockbench.parallel import on_each_node
from lockbench.protocols import Node

INVENTORY_FILE = "inventory.yaml"


def _prepare(node: Node) -> None:
    node.run(f"mkdir -p {shlex.quote(node.data_dir)} && test -w {shlex.quote(node.data_dir)}")


def ssh_up(user_inventory: Path, cluster_dir: Path) -> Inventory:
    """Adopt the user's hosts as a cluster; ClusterError names any host that does not answer."""
    cluster_dir = cluster_dir.resolve()
    source = load_inventory(user_inventory)
    if source.runtime != "ssh":
        raise ConfigError(f"{user_inventory}: key 'runtime' must be ssh for --runtime ssh")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir.chmod(0o700)
    known_hosts = source.known_hosts
    if known_hosts is None:
        known_hosts = cluster_dir / "known_hosts"
        lines = [scan_host_key(n.name, n.address, n.ssh_port) for n in source.nodes]
        known_hosts.write_text("".join(lines))
        known_hosts.chmod(0o600)
    inventory = replace(source, cluster_dir=cluster_dir, known_hosts=known_hosts)
    nodes = [SshNode(spec, known_hosts) for spec in inventory.nodes]
    with ClusterHandle(inventory, nodes, ()) as probe:
        on_each_node("checking hosts", probe.nodes, _prepare)
    save_inventory(inventory, cluster_dir / INVENTORY_FILE)
    return inventory
