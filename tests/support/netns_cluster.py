"""A netns cluster for tests of any task: up, open, and always down (needs root)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.netns import netns_down, netns_up


@contextmanager
def netns_cluster(
    tmp_dir: Path, *, prefix: str, subnet: str, nodes: int = 5
) -> Iterator[ClusterHandle]:
    """Five sshd nodes in namespaces ``<prefix>-n1..`` on ``subnet``; torn down in ``finally``.

    Each task's tests use their own prefix and subnet so concurrent suites never collide.
    """
    cluster_dir = tmp_dir / f"cluster-{prefix}"
    try:
        inventory = netns_up(cluster_dir, prefix=prefix, subnet=subnet, nodes=nodes)
        with open_cluster(inventory) as cluster:
            yield cluster
    finally:
        netns_down(cluster_dir)
