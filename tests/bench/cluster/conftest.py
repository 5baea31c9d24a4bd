"""Fixtures for the cluster runtime tests: this task's netns names (lbc*) and subnet 10.77.1.0/24.

Other suites use lbn/lbr and 10.77.2.0/24 / 10.77.3.0/24 at the same time, so everything here is
found and checked by the ``lbc`` prefix only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cluster import ClusterHandle
from bench.cluster.testing import netns_cluster

PREFIX = "lbc"
SUBNET = "10.77.1.0/24"
LOCAL_BASE_OFFSET = 15000  # local runtime ports land in 22000-22999


def leftovers(prefix: str, cluster_dir: Path) -> list[str]:
    """Namespaces, links, processes and iptables rules that a cluster ``prefix`` left behind."""
    found: list[str] = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [
        f"netns {line.split()[0]}"
        for line in namespaces.splitlines()
        if line.startswith(f"{prefix}-")
    ]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [
        f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f" {prefix}-" in line
    ]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"rule {line}" for line in rules.splitlines() if f"{prefix}-" in line]
    marker = str(cluster_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"process {entry.name}: {cmdline.strip()}")
    return found


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """One five-node netns cluster shared by a test module; torn down after it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and sshd per node")
    with netns_cluster(tmp_path_factory.mktemp("netns"), prefix=PREFIX, subnet=SUBNET) as cluster:
        yield cluster
