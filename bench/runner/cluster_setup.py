"""Getting the test's cluster: from an inventory, a fresh netns/local cluster, or in-process.

The runner owns the cluster's life only when it created it (netns/local without an inventory):
then ``close`` also takes it down, unless the user asked to leave it running. An inventory's
cluster belongs to the user: the runner only closes its connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import load_inventory, open_cluster
from bench.cluster.inventory import NodeSpec
from bench.cluster.local_node import LocalNode
from bench.cluster.runtimes import cluster_down, cluster_up
from bench.runner.config import TestConfig
from lockbench.errors import ConfigError
from lockbench.protocols import Cluster

log = logging.getLogger(__name__)


class InProcessCluster:
    """Runtime ``none``: the lock service lives in the bench; its one node is this host."""

    runtime = "none"

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._node = LocalNode(NodeSpec(name="bench", address="127.0.0.1", data_dir=str(data_dir)))

    @property
    def nodes(self) -> Sequence[LocalNode]:
        return (self._node,)

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset()

    def node(self, name: str) -> LocalNode:
        if name != self._node.name:
            raise ConfigError(f"no node named {name!r}: an in-process cluster has only 'bench'")
        return self._node

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class TestCluster:
    """The cluster plus how to let go of it; ``created`` when the runner made it."""

    __test__ = False

    cluster: Cluster
    created: bool
    _release: Callable[[bool], list[str]]

    def close(self, *, leave_running: bool) -> list[str]:
        """Close connections and, for a cluster the runner made, take it down; returns errors."""
        return self._release(leave_running)


def default_cluster_dir(config: TestConfig) -> Path:
    return Path(config.cluster_dir) if config.cluster_dir else Path(".clusters") / config.name


def open_test_cluster(config: TestConfig, run_dir: Path) -> TestCluster:
    """Open (and if needed create) the cluster the test names; ClusterError if it cannot."""
    if config.runtime == "none":
        in_process = InProcessCluster(run_dir / "nodes" / "bench")
        return TestCluster(in_process, False, lambda _leave: [])

    if config.inventory is not None:
        handle = open_cluster(load_inventory(Path(config.inventory)))

        def close_inventory(_leave: bool) -> list[str]:
            return _attempt("close SSH connections", handle.close)

        return TestCluster(handle, False, close_inventory)

    if config.runtime == "ssh":
        raise ConfigError("runtime: 'ssh' needs an inventory of your hosts (--inventory FILE)")
    cluster_dir = default_cluster_dir(config)
    inventory = cluster_up(
        config.runtime,
        cluster_dir,
        subnet=config.subnet,
        prefix=config.netns_prefix,
        nodes=config.nodes,
        port_offset=config.port_offset,
    )
    try:
        handle = open_cluster(inventory)
    except BaseException:
        cluster_down(cluster_dir)
        raise

    def close_created(leave_running: bool) -> list[str]:
        errors = _attempt("close node connections", handle.close)
        if leave_running:
            log.info(
                "cluster left running in %s (take it down: lockbench cluster down)", cluster_dir
            )
            return errors
        return errors + _attempt(
            f"take down the cluster in {cluster_dir}", lambda: cluster_down(cluster_dir)
        )

    return TestCluster(handle, True, close_created)


def _attempt(what: str, action: Callable[[], object]) -> list[str]:
    """Run a teardown step; a failure becomes an error string (teardown never hides a verdict)."""
    try:
        action()
    except Exception as exc:
        log.error("could not %s: %s", what, exc)
        return [f"could not {what}: {exc}"]
    return []
