#!/usr/bin/env python3
"""Raft benchmarks: prints figures for docs/performance.md (a script, not a timed test).

1. The core alone (no I/O): proposals/s through a 3- and 5-node group driven in memory, and the
   wall-clock commit latency (p50/p99) per proposal at several batch sizes.
2. The core in the deterministic simulation (fault-free, 1-5 ms network, 1-4 ms fsync): commit
   latency in virtual milliseconds.
3. The log's group commit on this machine's disk: RaftStorage.save at batch sizes 1..256
   (records per fsync, fsyncs/s, records/s, fsync p50/p99).
4. Real Replica groups on loopback (ports 18900+): proposals/s, records per fsync and fsyncs/s
   at 1..128 concurrent proposers, which shows the shell's group commit at work.

Every loop is bounded by a count and a time limit. Usage: python scripts/bench_raft.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reference_impl" / "raft"))

from raft_sim import ManualCluster, SimOptions, Simulation  # noqa: E402

from reference_impl.raft.types import Entry, HardState  # noqa: E402
from reference_impl.server.replica import Replica  # noqa: E402
from reference_impl.storage.raft_storage import RaftStorage  # noqa: E402

TIME_LIMIT_SECONDS = 8.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_core(nodes: int, batch: int, proposals: int) -> None:
    cluster = ManualCluster(nodes)
    leader = cluster.elect("n1")
    cluster.tick_all()
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
        if leader.applied_index > 10_000:
            snapshot = leader.compact(leader.applied_index, b"")
            cluster.storages["n1"].save_snapshot(snapshot)
    total = time.perf_counter() - started
    print(
        f"core  nodes={nodes} batch={batch:4d}: {done / total:9.0f} proposals/s  "
        f"commit p50 {percentile(latencies, 0.5) * 1e3:7.3f} ms  "
        f"p99 {percentile(latencies, 0.99) * 1e3:7.3f} ms  ({done} proposals)"
    )


def bench_simulation(nodes: int, seeds: int) -> None:
    latencies: list[int] = []
    options = SimOptions(
        nodes=nodes,
        duration_ms=3_000,
        max_delay_ms=5,
        partitions=False,
        crashes=False,
        transfers=False,
        proposal_every_ms=(1, 3),
        max_inflight=16,
        max_entries_per_append=256,
    )
    started = time.perf_counter()
    committed = 0
    for seed in range(seeds):
        simulation = Simulation(seed, options).run()
        latencies.extend(simulation.commit_latencies_ms)
        committed += len(simulation.acked)
    wall = time.perf_counter() - started
    print(
        f"sim   nodes={nodes} (net 1-5 ms, fsync 1-4 ms): commit p50 "
        f"{percentile([float(v) for v in latencies], 0.5):.0f} ms  "
        f"p99 {percentile([float(v) for v in latencies], 0.99):.0f} ms virtual; "
        f"{committed} commits over {seeds} seeds in {wall:.1f} s wall"
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


class NullMachine:
    def apply(self, index: int, data: bytes) -> int:
        return index

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes, index: int) -> None:
        return None


async def bench_replica(directory: Path, nodes: int, concurrency: int, total: int) -> None:
    base_port = 18900 + nodes * 10
    peers = {f"n{i}": ("127.0.0.1", base_port + i) for i in range(1, nodes + 1)}
    replicas = [
        Replica(node_id, peers, directory / f"r{nodes}-{concurrency}" / node_id, NullMachine())
        for node_id in peers
    ]
    try:
        for replica in replicas:
            await replica.start()
        deadline = time.monotonic() + 10
        while not any(r.is_leader for r in replicas) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        leader = next(r for r in replicas if r.is_leader)
        latencies: list[float] = []
        stop_at = time.monotonic() + TIME_LIMIT_SECONDS
        per_worker = total // concurrency

        async def worker(worker_id: int) -> None:
            for i in range(per_worker):
                if time.monotonic() > stop_at:
                    return
                begun = time.perf_counter()
                await leader.propose(b"w%d-%d" % (worker_id, i), timeout=5)
                latencies.append(time.perf_counter() - begun)

        fsyncs_before = leader.metrics.fsyncs
        records_before = leader.metrics.records_persisted
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - started
        fsyncs = leader.metrics.fsyncs - fsyncs_before
        records = leader.metrics.records_persisted - records_before
        print(
            f"replica nodes={nodes} clients={concurrency:3d}: {len(latencies) / wall:7.0f} "
            f"proposals/s  p50 {percentile(latencies, 0.5) * 1e3:6.2f} ms  p99 "
            f"{percentile(latencies, 0.99) * 1e3:6.2f} ms  leader {fsyncs / wall:5.0f} fsyncs/s "
            f"{records / max(1, fsyncs):5.1f} records/fsync"
        )
    finally:
        for replica in replicas:
            await replica.stop()


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
