"""The open cluster: the inventory's nodes as live Node objects plus the runtime's capabilities."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

from bench.cluster.inventory import Inventory, NodeSpec
from bench.cluster.link_faults import LinkFaultController
from bench.cluster.local_node import LocalNode
from bench.cluster.ssh_node import SshNode
from lockbench.errors import ConfigError
from lockbench.protocols import Cluster

ClusterNode = SshNode | LocalNode

ALL_FAULTS: frozenset[str] = frozenset(
    {"partition", "kill", "pause", "clock", "netem", "power-loss"}
)


class ClusterHandle:
    """Implements lockbench.protocols.Cluster; close() (or ``with``) closes the SSH connections.

    ``link_faults``: on the local runtime, the controller of the link proxy through which its
    partitions and netem go (bench.cluster.link_faults); None on runtimes that use iptables/tc.
    """

    def __init__(
        self,
        inventory: Inventory,
        nodes: Sequence[ClusterNode],
        capabilities: Iterable[str],
        *,
        link_faults: LinkFaultController | None = None,
    ) -> None:
        self.inventory = inventory
        self.link_faults = link_faults
        self._nodes: tuple[ClusterNode, ...] = tuple(nodes)
        self._by_name = {node.name: node for node in self._nodes}
        self._capabilities = frozenset(capabilities)

    @property
    def runtime(self) -> str:
        return self.inventory.runtime

    @property
    def nodes(self) -> Sequence[ClusterNode]:
        return self._nodes

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def node(self, name: str) -> ClusterNode:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name)
            raise ConfigError(f"no node named {name!r} in this cluster (nodes: {known})") from None

    def spec(self, name: str) -> NodeSpec:
        return self.node(name).spec

    def close(self) -> None:
        for node in self._nodes:
            node.close()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClusterHandle({self.runtime}, {[n.name for n in self._nodes]})"


def require_capabilities(cluster: Cluster, needed: Iterable[str]) -> None:
    """Refuse, plainly, a test that needs faults this cluster's runtime cannot inject."""
    missing = sorted(set(needed) - cluster.capabilities)
    if missing:
        can = ", ".join(sorted(cluster.capabilities)) or "none"
        raise ConfigError(
            f"the {cluster.runtime} runtime cannot inject {', '.join(missing)} "
            f"(it can: {can}); use the netns, ssh or vagrant runtime for these faults"
        )
