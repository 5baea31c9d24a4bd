"""Cluster runtimes: netns, local, ssh and vagrant nodes behind one Node/Cluster interface.

``open_cluster(inventory)`` is the only way the rest of the bench gets at nodes; runtimes differ
only in how their inventory is made (``netns_up``, ``local_up``, ``vagrant_up``, by hand for ssh)
and in which faults they can inject (``capabilities``).
"""

from __future__ import annotations

import os

from bench.cluster.handle import ALL_FAULTS, ClusterHandle, ClusterNode, require_capabilities
from bench.cluster.inventory import Inventory, NodeSpec, load_inventory, save_inventory
from bench.cluster.link_faults import LinkFaultController, LinkFaultError, LinkFaultState
from bench.cluster.local_node import LocalNode
from bench.cluster.ssh_node import NodeUnreachable, SshNode
from lockbench.clock_preload import can_build_library

# What each runtime can do to its nodes. The local runtime's nodes share one loopback: its
# partitions and netem go through the link proxy (cluster.link_faults), which a cluster whose
# ports leave no room for it lacks; it has clock faults only where the wall-clock library
# (lockbench.clock_preload) is built or a C compiler can build it, and power loss only as
# root (the filesystem of that fault mounts itself through /dev/fuse).
LINK_FAULTS: frozenset[str] = frozenset({"partition", "netem"})
RUNTIME_CAPABILITIES: dict[str, frozenset[str]] = {
    "netns": ALL_FAULTS,
    "ssh": ALL_FAULTS,
    "vagrant": ALL_FAULTS,
    "local": frozenset({"kill", "pause"}) | LINK_FAULTS,
}


def runtime_capabilities(runtime: str) -> frozenset[str]:
    """The faults a runtime can inject on this machine."""
    capabilities = RUNTIME_CAPABILITIES[runtime]
    if runtime == "local" and can_build_library():
        capabilities = capabilities | {"clock"}
    if runtime == "local" and can_mount_fuse():
        capabilities = capabilities | {"power-loss"}
    return capabilities


def can_mount_fuse() -> bool:
    """The power-loss filesystem mounts through /dev/fuse itself, which needs root."""
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


def open_cluster(inventory: Inventory) -> ClusterHandle:
    """Live nodes for an inventory. SSH connections open lazily, on a node's first command."""
    nodes: list[ClusterNode]
    capabilities = runtime_capabilities(inventory.runtime)
    link_faults = LinkFaultController.for_inventory(inventory)
    if inventory.runtime == "local":
        nodes = [LocalNode(spec) for spec in inventory.nodes]
        if link_faults is None:
            capabilities -= LINK_FAULTS
    else:
        nodes = [SshNode(spec, inventory.known_hosts) for spec in inventory.nodes]
    return ClusterHandle(inventory, nodes, capabilities, link_faults=link_faults)


__all__ = [
    "ALL_FAULTS",
    "RUNTIME_CAPABILITIES",
    "ClusterHandle",
    "ClusterNode",
    "Inventory",
    "LinkFaultController",
    "LinkFaultError",
    "LinkFaultState",
    "LocalNode",
    "NodeSpec",
    "NodeUnreachable",
    "SshNode",
    "load_inventory",
    "open_cluster",
    "require_capabilities",
    "runtime_capabilities",
    "save_inventory",
]
