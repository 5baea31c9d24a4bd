#!/usr/bin/env python3
"""Where lockd's CPU goes: CPU time per acquire+release pair of each node and of the driver.

Five lockd nodes on loopback (fsync on, ports 25700+), one asyncio driver in this process
running the uncontended workload of benchmarks/lockd.py (each client on its own lock). For
each node: CPU per pair (user+system, and system alone) from /proc, context switches per entry,
per entry the Raft messages, fsyncs and records from its /metrics, and the mean fsync its
histogram saw; the driver's own CPU per pair; the sum; how much of the machine's cores it all
used. Runs are bounded by --seconds.

    python -m benchmarks.lockd_cpu --clients 8 32 --seconds 5 --repeat 2
    python -m benchmarks.lockd_cpu --lockd-arg=--event-loop --lockd-arg=asyncio
    python -m benchmarks.lockd_cpu --config snapshot_entries=10000
    python -m benchmarks.lockd_cpu --config leader_writes=background
    python -m benchmarks.lockd_cpu --driver-loop asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.drivers.lock_load import lockd_connect, uncontended
from benchmarks.drivers.lockd_metrics import scrape
from benchmarks.drivers.proc import context_switches, cpu_seconds
from benchmarks.stats import percentile
from reference_impl.server import event_loop
from reference_impl.server.local_cluster import LocalCluster

BASE_PORT = 25700
COUNTERS = ("messages_received", "fsyncs", "records_persisted")


def raft_counters(host: str, port: int) -> dict[str, float]:
    """The COUNTERS and the fsync histogram's sum and count (``fsync_sum``, ``fsync_count``)."""
    metrics = scrape(host, port)
    names = {f"lockd_raft_{name}_total": name for name in COUNTERS}
    names |= {"lockd_raft_fsync_seconds_sum": "fsync_sum"}
    names |= {"lockd_raft_fsync_seconds_count": "fsync_count"}
    return {short: metrics[metric] for metric, short in names.items() if metric in metrics}


async def measure(cluster: LocalCluster, clients: int, seconds: float) -> None:
    leader = await asyncio.to_thread(cluster.wait_for_leader)
    await uncontended(lockd_connect(cluster.endpoints), clients, 1.0)  # warm up
    pids = {node.id: cluster.pid(node.id) for node in cluster.nodes}
    counters0 = {n.id: raft_counters(n.host, n.http_port) for n in cluster.nodes}
    cpu0 = {node_id: cpu_seconds(pid) for node_id, pid in pids.items()}
    switches0 = {node_id: context_switches(pid) for node_id, pid in pids.items()}
    driver0 = time.process_time()
    rate, latencies = await uncontended(lockd_connect(cluster.endpoints), clients, seconds)
    driver = time.process_time() - driver0
    cpu1 = {node_id: cpu_seconds(pid) for node_id, pid in pids.items()}
    switches1 = {node_id: context_switches(pid) for node_id, pid in pids.items()}
    counters1 = {n.id: raft_counters(n.host, n.http_port) for n in cluster.nodes}
    pairs = rate * seconds
    entries = 2 * pairs
    print(
        f"{clients} clients: {rate:.0f} pairs/s, acquire p50 "
        f"{percentile(latencies, 0.5) * 1000:.1f} ms (leader {leader})"
    )
    total = driver
    for node_id in pids:
        used = cpu1[node_id][0] - cpu0[node_id][0]
        system = cpu1[node_id][1] - cpu0[node_id][1]
        total += used
        moved = {n: counters1[node_id].get(n, 0) - counters0[node_id].get(n, 0) for n in COUNTERS}
        per_entry = " ".join(f"{name} {value / entries:.2f}" for name, value in moved.items())
        syncs = counters1[node_id].get("fsync_count", 0) - counters0[node_id].get("fsync_count", 0)
        synced = counters1[node_id].get("fsync_sum", 0) - counters0[node_id].get("fsync_sum", 0)
        mean_fsync = f"  mean fsync {synced / syncs * 1000:.2f} ms" if syncs else ""
        print(
            f"  {node_id}{'*' if node_id == leader else ' '} {used / seconds * 100:5.1f}% of a "
            f"core  {used / pairs * 1e6:5.0f} us/pair (system {system / pairs * 1e6:4.0f})  "
            f"per entry: switches {(switches1[node_id] - switches0[node_id]) / entries:.2f} "
            f"{per_entry}{mean_fsync}"
        )
    print(f"  driver {driver / seconds * 100:5.1f}% of a core  {driver / pairs * 1e6:5.0f} us/pair")
    print(f"  total {total / pairs * 1e6:.0f} us/pair, {total / seconds * 100:.0f}% of a core")


def _config_item(text: str) -> tuple[str, int | str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, int(value) if value.isdigit() else value


async def main_async(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_cpu_")))
        cluster = stack.enter_context(
            LocalCluster(
                tmp,
                size=5,
                base_port=BASE_PORT,
                fsync=True,
                extra_config=dict(args.config),
                extra_args=args.lockd_arg,
            )
        )
        cluster.start_all()
        for _ in range(args.repeat):
            for clients in args.clients:
                await measure(cluster, clients, args.seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--config",
        type=_config_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a lockd.yaml setting for every node, e.g. snapshot_entries=10000 or "
        "leader_writes=background (repeatable; digits are an integer)",
    )
    parser.add_argument(
        "--lockd-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra lockd flag, e.g. --lockd-arg=--event-loop --lockd-arg=asyncio",
    )
    parser.add_argument(
        "--driver-loop",
        choices=event_loop.CHOICES,
        default="auto",
        help="the driver's event loop (auto: uvloop when installed, as in benchmarks.lockd)",
    )
    args = parser.parse_args()
    loop = event_loop.resolve(args.driver_loop)
    print(f"driver on {loop}")
    event_loop.run(main_async(args), loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
