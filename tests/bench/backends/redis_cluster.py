"""Real Redis servers for the redis/redlock tests: the backends' own deployment, local runtime.

Five servers on 127.0.0.1 (no root), ports 6379 + 1400 + 10 x (i - 1): clear of the ports other
suites' local clusters use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from bench.backends.redis_servers import REDIS, RedisServers
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.local import local_down, local_up
from lockbench.parallel import on_each_node
from tests.support.ports import free_port

BASE_OFFSET = 1400


def skip_without_redis() -> None:
    if not os.access(REDIS.program, os.X_OK):
        pytest.skip(f"{REDIS.program} missing: install the Debian package {REDIS.package}")


@contextmanager
def running(backend: RedisServers, tmp: Path) -> Iterator[ClusterHandle]:
    """The backend's servers deployed and started on a local cluster; all stopped after."""
    skip_without_redis()
    cluster_dir = tmp / "redis-cluster"
    try:
        with open_cluster(local_up(cluster_dir, base_offset=BASE_OFFSET)) as cluster:
            backend.deploy(cluster)
            on_each_node("start", cluster.nodes, backend.start)
            try:
                yield cluster
            finally:
                on_each_node("stop", cluster.nodes, backend.stop)
    finally:
        local_down(cluster_dir)


def local_redlock_test(tmp: Path, name: str, port_offset: int, **keys: object) -> Path:
    """A short Redlock mutex test file on a local cluster of its own (``keys`` override);
    ``port_offset`` keeps its servers clear of BASE_OFFSET's and the default ports."""
    data: dict[str, object] = {
        "name": name,
        "runtime": "local",
        "cluster_dir": str(tmp / f"{name}-cluster"),
        "port_offset": port_offset,
        "backend": "redlock",
        "workload": "mutex",
        "workload_options": {"locks": 2, "hold": 0.02, "acquire_timeout": 2},
        "resource_mode": "unfenced",  # Redlock has no fencing token
        "resource_port": free_port(),
        "concurrency": 3,
        "op_timeout": 3,
        **keys,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
