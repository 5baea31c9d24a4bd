"""Real lockd clusters on loopback for the server tests, on ports the kernel says are free."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """Builds LocalClusters and stops every process they started, even when the test fails."""
    clusters: list[LocalCluster] = []

    def build(**kwargs: Any) -> LocalCluster:
        kwargs.setdefault("base_port", free_port_block(10 * kwargs.get("size", 3)))
        cluster = LocalCluster(tmp_path / f"cluster{len(clusters)}", **kwargs)
        clusters.append(cluster)
        return cluster

    try:
        yield build
    finally:
        for cluster in clusters:
            cluster.stop_all()
