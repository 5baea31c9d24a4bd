"""Network partitions: each node drops packets from the peers it must not hear.

Rules go into our own ``LOCKBENCH`` chain (see nemesis.iptables) and carry a comment naming the
nemesis entry, so a stop removes exactly the rules that entry added and a heal removes the chain.
On the local runtime the cluster's link proxy blocks the peer links instead (nemesis.links).
"""

from __future__ import annotations

from collections.abc import Mapping

from lockbench.protocols import Cluster, FaultAction
from nemesis.fault import FaultTarget, HealError
from nemesis.iptables import (
    PARTITION_HOOK,
    apply_rules_command,
    drop_from_rule,
    ensure_chain_command,
    remove_chain_command,
)
from nemesis.links import describe_links, heal_links, link_faults_of
from nemesis.remote import NodeLocks, error_messages, on_nodes, raise_first, run_checked


class PartitionNemesis:
    """Implements lockbench.protocols.Nemesis for ``start-partition``/``stop-partition``."""

    name = "partition"

    def __init__(self, cluster: Cluster, tag: str, locks: NodeLocks) -> None:
        self.cluster = cluster
        self.tag = tag
        self.locks = locks
        self.active: dict[str, list[str]] = {}
        self.links = link_faults_of(cluster)

    def setup(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def rules_for(self, grudge: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
        """The rules each node gets: one DROP per peer it must not hear, in a stable order."""
        address = {node.name: node.address for node in self.cluster.nodes}
        return {
            victim: [drop_from_rule(address[source], self.tag) for source in sorted(sources)]
            for victim, sources in sorted(grudge.items())
            if sources
        }

    def invoke(self, f: str, target: object) -> FaultAction:
        if f == "start-partition":
            if not isinstance(target, FaultTarget):
                raise TypeError("start-partition needs a FaultTarget with a grudge")
            return self._start(target.grudge)
        if f == "stop-partition":
            return self._stop()
        raise ValueError(f"partition nemesis cannot {f!r}")

    def _start(self, grudge: Mapping[str, frozenset[str]]) -> FaultAction:
        if self.links is not None:
            state = self.links.partition(grudge)
            return FaultAction(
                "start-partition",
                {
                    "grudge": {k: sorted(v) for k, v in sorted(grudge.items()) if v},
                    "links": describe_links(state),
                },
            )
        if self.active:
            self._stop()
        rules = self.rules_for(grudge)

        def cut(name: str) -> None:
            node = self.cluster.node(name)
            with self.locks.lock(name):
                command = f"{ensure_chain_command(PARTITION_HOOK)} && "
                command += apply_rules_command("-A", rules[name])
                run_checked(node, command, "adding partition rules")

        self.active = dict(rules)
        raise_first(on_nodes([self.cluster.node(n) for n in rules], lambda node: cut(node.name)))
        return FaultAction(
            "start-partition",
            {
                "grudge": {k: sorted(v) for k, v in sorted(grudge.items()) if v},
                "rules": {k: [f"-A {r}" for r in v] for k, v in rules.items()},
            },
        )

    def _stop(self) -> FaultAction:
        if self.links is not None:
            state = self.links.partition({})
            return FaultAction("stop-partition", {"links": describe_links(state)})
        active, self.active = self.active, {}

        def mend(name: str) -> None:
            with self.locks.lock(name):
                command = apply_rules_command("-D", active[name])
                run_checked(self.cluster.node(name), command, "removing partition rules")

        results = on_nodes([self.cluster.node(n) for n in active], lambda node: mend(node.name))
        failed = {name for name, result in results.items() if isinstance(result, Exception)}
        self.active = {name: active[name] for name in failed}
        raise_first(results)
        return FaultAction(
            "stop-partition", {"rules": {k: [f"-D {r}" for r in v] for k, v in active.items()}}
        )

    def heal(self) -> FaultAction | None:
        """Remove the whole chain on every node (also rules of an earlier, crashed bench)."""
        if self.links is not None:
            heal_links(self.links)
            return FaultAction("stop-partition", {"links": {}})
        return heal_partitions(self.cluster, self.locks, self)

    def teardown(self) -> None:
        self.heal()


def heal_partitions(
    cluster: Cluster, locks: NodeLocks, nemesis: PartitionNemesis | None = None
) -> FaultAction | None:
    def remove(name: str) -> None:
        with locks.lock(name):
            run_checked(cluster.node(name), remove_chain_command(PARTITION_HOOK), "removing chain")

    results = on_nodes(list(cluster.nodes), lambda node: remove(node.name))
    errors = error_messages(results)
    if nemesis is not None and not errors:
        nemesis.active = {}
    if errors:
        raise HealError(errors)
    return FaultAction("stop-partition", {"removed_chain": PARTITION_HOOK.chain})
