#!/usr/bin/env python3
"""Raft benchmarks: prints figures for docs/performance.md (a script, not a timed test).

1. The core alone (no I/O): proposals/s through a 3- and 5-node group driven in memory, and the
   wall-clock commit latency (p50/p99) per proposal at several batch sizes.
2. The core on a virtual clock (benchmarks/drivers/raft_group.py: fault-free, 1-5 ms network,
   1-4 ms fsync, a proposal every 1-3 ms): commit latency in virtual milliseconds.
3. The log's group commit on this machine's disk: RaftStorage.save at batch sizes 1..256
   (records per fsync, fsyncs/s, records/s, fsync p50/p99).
4. Real Replica groups on loopback (ports 18900+): proposals/s, records per fsync and fsyncs/s
   at 1..128 concurrent proposers, which shows the shell's group commit at work.

Every loop is bounded by a count and a time limit. Usage: python -m benchmarks.raft [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.drivers.raft_group import InstantGroup, TimedGroup, TimedOptions
from benchmarks.drivers.replica_group import propose_load, replica_group
from benchmarks.stats import percentile
from reference_impl.raft.types import Entry, HardState
from reference_impl.storage.raft_storage import RaftStorage

TIME_LIMIT_SECONDS = 8.0


def bench_core(nodes: int, batch: int, proposals: int) -> None:
    cluster = InstantGroup(nodes)
    leader = cluster.elect("n1")
    latencies: list[float] = []
    done = 0
    started = time.perf_counter()
    while done < proposals and time.perf_counter() - started < TIME_LIMIT_SECONDS:
        round_start = time.perf_counter()
        first = 0
        for i in range(batch):
            index = leader.propose(b"lock-acquire:key-%d:client-%d" % (i, done))
            first = first or index
        cluster.process("n1")
        cluster.deliver()
        assert leader.commit_index >= first + batch - 1
        elapsed = time.perf_counter() - round_start
        latencies.extend([elapsed] * batch)
        done += batch
    total = time.perf_counter() - started
    print(
        f"core  nodes={nodes} batch={batch:4d}: {done / total:9.0f} proposals/s  "
        f"commit p50 {percentile(latencies, 0.5) * 1e3:7.3f} ms  "
        f"p99 {percentile(latencies, 0.99) * 1e3:7.3f} ms  ({done} proposals)"
    )


def bench_simulation(nodes: int, seeds: int) -> None:
    latencies: list[float] = []
    options = TimedOptions(nodes=nodes, duration_ms=3_000, network_ms=(1, 5), fsync_ms=(1, 4))
    started = time.perf_counter()
    for seed in range(seeds):
        latencies.extend(TimedGroup(seed, options).run())
    wall = time.perf_counter() - started
    print(
        f"sim   nodes={nodes} (net 1-5 ms, fsync 1-4 ms): commit p50 "
        f"{percentile(latencies, 0.5):.0f} ms  p99 {percentile(latencies, 0.99):.0f} ms virtual; "
        f"{len(latencies)} commits over {seeds} seeds in {wall:.1f} s wall"
    )


def bench_storage(directory: Path, batch: int, saves: int) -> None:
    storage = RaftStorage(directory / f"wal-{batch}")
    storage.load()
    payload = b"x" * 64
    fsyncs: list[float] = []
    index = 0
    started = time.perf_counter()
    for _ in range(saves):
        entries = [Entry(1, index + i + 1, payload) for i in range(batch)]
        index += batch
        stats = storage.save(HardState(1, "n1", index), entries)
        fsyncs.append(stats.fsync_seconds)
        if time.perf_counter() - started > TIME_LIMIT_SECONDS:
            break
    total = time.perf_counter() - started
    storage.close()
    print(
        f"wal   batch={batch:4d}: {len(fsyncs) / total:7.0f} fsyncs/s  "
        f"{len(fsyncs) * batch / total:9.0f} entries/s  records/fsync {batch + 1}  "
        f"fdatasync p50 {percentile(fsyncs, 0.5) * 1e3:.2f} ms p99 "
        f"{percentile(fsyncs, 0.99) * 1e3:.2f} ms"
    )


async def bench_replica(directory: Path, nodes: int, concurrency: int, total: int) -> None:
    node_ids = [f"n{i}" for i in range(1, nodes + 1)]
    group_dir = directory / f"r{nodes}-{concurrency}"
    async with replica_group(group_dir, node_ids, 18900 + nodes * 10 + 1) as leader:
        fsyncs_before = leader.metrics.fsyncs
        records_before = leader.metrics.records_persisted
        latencies, wall = await propose_load(leader, concurrency, total, TIME_LIMIT_SECONDS)
        fsyncs = leader.metrics.fsyncs - fsyncs_before
        records = leader.metrics.records_persisted - records_before
        print(
            f"replica nodes={nodes} clients={concurrency:3d}: {len(latencies) / wall:7.0f} "
            f"proposals/s  p50 {percentile(latencies, 0.5) * 1e3:6.2f} ms  p99 "
            f"{percentile(latencies, 0.99) * 1e3:6.2f} ms  leader {fsyncs / wall:5.0f} fsyncs/s "
            f"{records / max(1, fsyncs):5.1f} records/fsync"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to put WAL files (default: a temp dir)"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    scale = 0.1 if args.quick else 1.0
    print(f"# python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    for nodes in (3, 5):
        for batch in (1, 16, 256):
            bench_core(nodes, batch, int(20_000 * scale) or batch)
    for nodes in (3, 5):
        bench_simulation(nodes, max(1, int(10 * scale)))
    with tempfile.TemporaryDirectory(dir=args.dir) as raw:
        directory = Path(raw)
        for batch in (1, 16, 256):
            bench_storage(directory, batch, int(2_000 * scale) or 1)
        for nodes in (1, 3):
            for concurrency in (1, 16, 128):
                asyncio.run(bench_replica(directory, nodes, concurrency, int(4_000 * scale)))


if __name__ == "__main__":
    main()
