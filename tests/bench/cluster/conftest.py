"""Fixtures for the cluster runtime tests (names and subnet in cluster_names.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.cluster import ClusterHandle
from tests.bench.cluster.cluster_names import PREFIX, SUBNET
from tests.support.netns_cluster import netns_cluster


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """One five-node netns cluster shared by a test module; torn down after it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and sshd per node")
    with netns_cluster(tmp_path_factory.mktemp("netns"), prefix=PREFIX, subnet=SUBNET) as cluster:
        yield cluster
