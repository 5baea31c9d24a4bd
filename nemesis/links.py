"""The local runtime's link proxy as the nemesis sees it (bench.cluster.link_faults).

Local nodes share one loopback, so iptables cannot tell them apart; their peer links run through
a proxy whose controller the cluster exposes as ``cluster.link_faults`` (None on other runtimes).
Partitions and netem use it there; only what the proxy can do (block, delay, jitter, loss on peer
links between servers) is offered, and validation refuses the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

from lockbench.protocols import Cluster
from nemesis.fault import HealError

NodeOrLink = str | tuple[str, str]


@runtime_checkable
class LinkFaults(Protocol):
    """The part of bench.cluster.link_faults.LinkFaultController the nemesis uses."""

    def partition(self, grudge: Mapping[str, Collection[str]]) -> Any: ...

    def set_quality(
        self,
        nodes_or_links: Collection[NodeOrLink],
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
    ) -> Any: ...

    def heal(self) -> Any: ...


def link_faults_of(cluster: Cluster) -> LinkFaults | None:
    """The cluster's link proxy controller, if its runtime routes peer links through one."""
    controller = getattr(cluster, "link_faults", None)
    return controller if isinstance(controller, LinkFaults) else None


def describe_links(state: Any) -> Any:
    """The faulty links of a proxy answer as plain data for the history record."""
    describe = getattr(state, "describe", None)
    return describe() if callable(describe) else None


def heal_links(links: LinkFaults) -> None:
    """Every link healthy again (a proxy that is not running has nothing to heal)."""
    try:
        links.heal()
    except Exception as exc:
        raise HealError([f"link proxy: heal failed: {exc}"]) from None
