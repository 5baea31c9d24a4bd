"""The runner's client path on the in-process memory backend: a mutex workload, the memory
backend's single node and a ``ClientDriver``, wired the way ``lockbench run`` wires them.

Shared by tests that drive the real runner without a cluster (tests/bench/runner) and by the
runner benchmarks (benchmarks/runner.py, benchmarks/lease_lost.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.memory import MemoryBackend
from bench.runner.cluster_setup import InProcessCluster
from bench.runner.process import ClientDriver, HistorySink, RunStats
from lockbench.options import parse_options
from workloads.base import WorkloadContext
from workloads.mutex import MutexOptions, MutexWorkload
from workloads.resource import ResourceClient


@dataclass
class MemoryRun:
    """One wired run; ``close()`` stops the memory backend's node."""

    workload: MutexWorkload
    backend: MemoryBackend
    cluster: InProcessCluster
    driver: ClientDriver
    stats: RunStats
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        self.backend.stop(self.cluster.nodes[0])


def mutex_on_memory(
    directory: Path,
    history: HistorySink,
    *,
    processes: int,
    mutex_options: dict[str, Any],
    resource: ResourceClient | None = None,
    seed: int = 1,
    ttl: float = 10.0,
    op_timeout: float = 5.0,
) -> MemoryRun:
    """A mutex workload with ``mutex_options`` (test-file spelling) driven by ``processes``
    client processes against the memory backend, recording into ``history``; ``ttl`` is the
    sessions' lease and ``op_timeout`` the driver's bound on one op."""
    options = parse_options(MutexOptions, mutex_options)
    workload = MutexWorkload(options, WorkloadContext(seed, processes, ttl, ("bench",), resource))
    backend = MemoryBackend()
    cluster = InProcessCluster(directory / "node")
    stats = RunStats()
    stop = asyncio.Event()
    driver = ClientDriver(
        workload=workload,
        backend=backend,
        cluster=cluster,
        history=history,
        stats=stats,
        concurrency=processes,
        op_timeout=op_timeout,
        ttl=ttl,
        stop=stop,
    )
    return MemoryRun(workload, backend, cluster, driver, stats, stop)
