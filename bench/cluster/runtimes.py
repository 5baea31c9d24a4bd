"""Bring a cluster of any runtime up or down by its directory (what ``lockbench cluster`` calls)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.cluster import open_cluster
from bench.cluster.inventory import Inventory, load_inventory
from bench.cluster.local import local_down, local_up
from bench.cluster.netns import STATE_FILE, netns_down, netns_up
from bench.cluster.ssh_hosts import ssh_up
from bench.cluster.vagrant import VM_STATE_FILE, bench_vagrant_up, vagrant_down, vagrant_up
from bench.cluster.vm_host import STATE_FILE as VM_HOST_STATE_FILE
from lockbench.daemon import kill_all_daemons
from lockbench.errors import ClusterError, ConfigError
from lockbench.parallel import on_each_node

INVENTORY_FILE = "inventory.yaml"
CLUSTERS_DIR = Path(".clusters")
DEFAULT_SUBNETS = {"netns": "10.77.0.0/24", "vagrant": "10.77.12.0/24"}
# Set to 1 to run `vagrant up` with your own provider and networking (VirtualBox, or libvirt as
# you have it) instead of the bench's namespaced libvirtd (docs/runtimes.md, vagrant).
BY_HAND_ENV = "LOCKBENCH_VAGRANT_BY_HAND"


def default_runtime() -> str:
    """netns when root on Linux (the most faithful), otherwise local."""
    return "netns" if sys.platform.startswith("linux") and os.geteuid() == 0 else "local"


def cluster_dir_for(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"cluster name {name!r}: use letters, digits, '-' or '_'")
    return CLUSTERS_DIR / name


def cluster_up(
    runtime: str,
    cluster_dir: Path,
    *,
    subnet: str | None = None,
    prefix: str = "lb",
    inventory: Path | None = None,
    nodes: int = 5,
    port_offset: int = 0,
) -> Inventory:
    subnet = subnet or DEFAULT_SUBNETS.get(runtime, DEFAULT_SUBNETS["netns"])
    if runtime == "netns":
        return netns_up(cluster_dir, prefix=prefix, subnet=subnet, nodes=nodes)
    if runtime == "local":
        return local_up(cluster_dir, nodes=nodes, base_offset=port_offset)
    if runtime == "vagrant":
        if os.environ.get(BY_HAND_ENV) == "1" or not sys.platform.startswith("linux"):
            return vagrant_up(cluster_dir)
        return bench_vagrant_up(cluster_dir, prefix=prefix, subnet=subnet, nodes=nodes)
    if runtime == "ssh":
        if inventory is None:
            raise ConfigError("--runtime ssh needs --inventory FILE listing your hosts")
        return ssh_up(inventory, cluster_dir)
    raise ConfigError(f"unknown runtime {runtime!r} (netns, local, ssh, vagrant)")


def load_cluster_inventory(cluster_dir: Path) -> Inventory:
    path = cluster_dir / INVENTORY_FILE
    if not path.exists():
        raise ClusterError(f"no cluster in {cluster_dir} (run `lockbench cluster up` first)")
    return load_inventory(path)


def cluster_down(cluster_dir: Path, *, destroy: bool = False) -> list[str]:
    """Tear a cluster down; a half-finished netns up (state but no inventory) is handled too."""
    if (cluster_dir / STATE_FILE).exists():
        return netns_down(cluster_dir)
    if (cluster_dir / VM_HOST_STATE_FILE).exists() or (cluster_dir / VM_STATE_FILE).exists():
        # the bench's own VMs: destroyed with their namespaced libvirtd, nothing to stop first
        return vagrant_down(cluster_dir, destroy=True)
    if not (cluster_dir / INVENTORY_FILE).exists():
        return []
    inventory = load_cluster_inventory(cluster_dir)
    if inventory.runtime == "local":
        return local_down(cluster_dir)
    removed: list[str] = []
    with open_cluster(inventory) as cluster:
        for killed in on_each_node("stopping daemons", cluster.nodes, kill_all_daemons).values():
            removed.extend(killed)
    if inventory.runtime == "vagrant":
        removed.extend(vagrant_down(cluster_dir, destroy=destroy))
    else:
        (cluster_dir / INVENTORY_FILE).unlink()
        removed.append(f"file {cluster_dir / INVENTORY_FILE}")
    return removed
