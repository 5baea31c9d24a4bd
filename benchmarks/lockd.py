#!/usr/bin/env python3
"""Benchmark lockd side by side with etcd: five nodes each on loopback, fsync on, one driver.

Prints, for lockd and (with --etcd, the default) a five-member etcd 3.4 cluster running at the
same time (Debian etcd-server, its lock API through the JSON gateway): uncontended
acquire+release pairs/s at 1/8/32 clients (each on its own lock) with p50/p99 acquire latency,
contended hand-offs/s with 8 clients on one lock, failover time after kill -9 of the leader (gap
until the next successful acquire; median and max over N trials), then a table with the ratios
and issue 4's targets. Figures alternate lockd/etcd so both see the same machine load; with
--repeat N each figure is the median of N runs. While one system is measured the other is paused
with SIGSTOP (--no-pause-idle leaves it running; either way the CPU it used is printed), and the
driver runs on uvloop when installed (--driver-loop), for both systems' clients. --scale adds
lockd's memory, snapshot and catch-up figures for many sessions and held locks, and, during their
loading, the leader changes each node saw and its slowest /health answer (event-loop stalls).
--lockd-port moves the nodes' ports (a second copy of the benchmark can then run beside
another).

    python -m benchmarks.lockd                  # a few minutes
    python -m benchmarks.lockd --seconds 5 --repeat 3 --failovers 5
    python -m benchmarks.lockd --no-etcd --scale
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.drivers.lock_load import (
    Connect,
    contended,
    gap_after_kill,
    lockd_connect,
    uncontended,
)
from benchmarks.drivers.lock_state import loaded_machine
from benchmarks.drivers.lockd_metrics import scrape
from benchmarks.drivers.proc import cpu_seconds, rss_mib
from benchmarks.etcd import ETCD_BINARY, EtcdCluster, etcd_connect, etcd_failover
from benchmarks.stats import percentile
from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.connection import Connection, ServerError
from reference_impl.client.errors import LockServiceError
from reference_impl.server import event_loop
from reference_impl.server.local_cluster import LocalCluster
from reference_impl.service.state_machine import LockStateMachine

BASE_PORT = 25500  # task F owns 25000-25999: etcd at 25000+, lockd at 25500+


async def failover(cluster: LocalCluster) -> float:
    leader = cluster.wait_for_leader()
    survivors = [n.endpoint for n in cluster.nodes if n.id != leader]
    client = await AsyncLockClient.connect(cluster.endpoints, ttl=30.0, timeout=1.0)
    await client.acquire("bench/warm-up", timeout=5.0)  # connected before the kill
    await client.release("bench/warm-up")
    client.endpoints = [*survivors, cluster.node(leader).endpoint]
    gap = await gap_after_kill(client, lambda: cluster.kill(leader), (LockServiceError,))
    cluster.start(leader)
    await asyncio.to_thread(wait_caught_up, cluster, leader, 60.0)
    return gap


class Bystanders:
    """The system not being measured: how much CPU it takes during a figure, and (with
    ``pause``) SIGSTOP for the figure's length so its background work (an etcd snapshot or
    lease expiry, a lockd snapshot) cannot land in the other system's figure. Both systems are
    treated alike; a resumed cluster is given its leader back before the next figure starts.
    """

    def __init__(self, pause: bool) -> None:
        self.pause = pause
        self.pids: dict[str, Callable[[], list[int]]] = {}
        self.wait_for_leader: dict[str, Callable[[], object]] = {}
        self.used: dict[str, list[float]] = {}

    def add(self, system: str, pids: Callable[[], list[int]], leader: Callable[[], object]) -> None:
        self.pids[system] = pids
        self.wait_for_leader[system] = leader
        self.used[system] = []

    @contextlib.asynccontextmanager
    async def measuring(self, system: str) -> Any:
        others = {name: pids() for name, pids in self.pids.items() if name != system}
        before = {pid: cpu_seconds(pid)[0] for pids in others.values() for pid in pids}
        started = time.monotonic()
        if self.pause:
            for pid in before:
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            for name, pids in others.items():
                used = sum(cpu_seconds(pid)[0] - before[pid] for pid in pids)
                self.used[name].append(used / elapsed)
            if self.pause:
                for pid in before:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                for name in others:
                    await asyncio.to_thread(self.wait_for_leader[name])

    def summary(self) -> str:
        parts = [
            f"{name} {statistics.median(used) * 100:.1f}% (max {max(used) * 100:.1f}%)"
            for name, used in self.used.items()
            if used
        ]
        state = "paused (SIGSTOP)" if self.pause else "running"
        return f"the system not being measured was {state}; its CPU, median of figures: " + (
            ", ".join(parts) + " of a core"
        )


def wait_caught_up(cluster: LocalCluster, node_id: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        leader = cluster.leader()
        mine, theirs = cluster.status(node_id), cluster.status(leader) if leader else None
        if mine and theirs and int(str(mine["applied_index"])) >= int(str(theirs["commit_index"])):
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{node_id} did not catch up within {timeout}s")


def metric_total(cluster: LocalCluster, node_id: str, name: str) -> float:
    """One counter from a node's /metrics (nan when the node does not answer)."""
    node = cluster.node(node_id)
    try:
        return scrape(node.host, node.http_port).get(name, float("nan"))
    except OSError:
        return float("nan")


STALL_PROBE = """
import json, select, sys, time, urllib.request
urls = json.loads(sys.argv[1])
worst = {node: 0.0 for node in urls}
slow = {node: 0 for node in urls}
slowest = []
probes = 0
while not select.select([sys.stdin], [], [], 0.05)[0]:
    probes += 1
    for node, url in urls.items():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=5.0) as response:
                response.read()
        except OSError:
            pass
        elapsed = time.perf_counter() - started
        worst[node] = max(worst[node], elapsed)
        slow[node] += elapsed > 0.1
        if elapsed > 0.1:
            slowest.append((elapsed, time.strftime("%H:%M:%S", time.gmtime(time.time())), node))
slowest = sorted(slowest, reverse=True)[:5]
print(json.dumps({"worst": worst, "slow": slow, "probes": probes, "slowest": slowest}))
"""


class StallProbe:
    """Times a GET /health on every node, one after the other, every 50 ms, from a process of its
    own (the driver's GIL and GC pauses would be counted otherwise): lockd answers HTTP on the
    same event loop as Raft, so a slow answer is a stalled loop, plus the machine's noise."""

    def __init__(self, cluster: LocalCluster) -> None:
        urls = {n.id: f"http://{n.host}:{n.http_port}/health" for n in cluster.nodes}
        self.worst: dict[str, float] = {}
        self.slow: dict[str, int] = {}
        self.probes = 0
        self.slowest: list[tuple[float, str, str]] = []  # (seconds, UTC time at the end, node)
        self._process = subprocess.Popen(
            [sys.executable, "-c", STALL_PROBE, json.dumps(urls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def stop(self) -> None:
        """Stop probing (closing its stdin) and take its figures."""
        output, _ = self._process.communicate(timeout=30)
        figures = json.loads(output)
        self.worst, self.slow, self.probes = figures["worst"], figures["slow"], figures["probes"]
        self.slowest = [(seconds, at, node) for seconds, at, node in figures["slowest"]]


def snapshot_log_lines(cluster: LocalCluster) -> list[str]:
    """The nodes' log lines about automatic snapshots (how long they took, and where)."""
    lines = []
    for node in cluster.nodes:
        if node.log_file.exists():
            lines += [
                f"{line[11:23]} {node.id}: {line.split(': ', 2)[-1]}"
                for line in node.log_file.read_text(errors="replace").splitlines()
                if "snapshot at index" in line or "snapshot child" in line
            ]
    return lines


async def scale(cluster: LocalCluster, sessions: int, locks: int) -> None:
    endpoint = cluster.node(cluster.wait_for_leader()).endpoint
    changes_before = {
        n.id: metric_total(cluster, n.id, "lockd_raft_leader_changes_total") for n in cluster.nodes
    }
    probe = StallProbe(cluster)
    connections: list[Connection] = []
    semaphore = asyncio.Semaphore(256)
    started = time.monotonic()
    retries = 0

    reconnecting = asyncio.Lock()

    async def reconnect(stale: list[Connection]) -> None:
        nonlocal endpoint, connections
        async with reconnecting:
            if stale is not connections:
                return  # another task already reconnected
            for connection in connections:
                await connection.close()
            endpoint = cluster.node(await asyncio.to_thread(cluster.wait_for_leader)).endpoint
            connections = [await Connection.open(endpoint, timeout=5.0) for _ in range(8)]

    await reconnect(connections)

    async def call(i: int, op: str, args: dict[str, object]) -> dict[str, object]:
        """One write, retried with the same (client_id, seq) across leader changes."""
        nonlocal retries
        async with semaphore:
            while True:
                current = connections
                try:
                    result: dict[str, object] = await current[i % len(current)].call(
                        op, args, timeout=30.0
                    )
                    return result
                except (ServerError, LockServiceError, TimeoutError):
                    retries += 1
                    await asyncio.sleep(0.2)
                    await reconnect(current)

    opened = await asyncio.gather(
        *(call(i, "open_session", {"client_id": f"scale{i}", "seq": 1, "ttl": 3600})
          for i in range(sessions))
    )  # fmt: skip
    ids = [str(r["session"]) for r in opened]
    per_session = locks // sessions
    await asyncio.gather(
        *(call(i, "acquire", {"client_id": f"scale{i}", "seq": 2 + j, "session": ids[i],
                              "name": f"scale/{i}/{j}", "timeout": 0})
          for i in range(sessions) for j in range(per_session))
    )  # fmt: skip
    loaded = time.monotonic() - started
    probe.stop()
    for connection in connections:
        await connection.close()
    print(
        f"scale: {sessions} sessions and {sessions * per_session} held locks loaded in "
        f"{loaded:.1f}s ({(sessions + sessions * per_session) / loaded:.0f} writes/s, "
        f"256 in flight, {retries} retried across leader changes)"
    )
    changes = {
        n.id: metric_total(cluster, n.id, "lockd_raft_leader_changes_total") - changes_before[n.id]
        for n in cluster.nodes
    }
    print(
        "scale: leader changes seen during loading (lockd_raft_leader_changes_total): "
        + ", ".join(f"{node_id} {int(delta)}" for node_id, delta in changes.items())
    )
    print(
        f"scale: GET /health during loading, {probe.probes} rounds: slowest (event-loop stall + "
        "noise), and how many over 100 ms: "
        + ", ".join(
            f"{node_id} {worst * 1000:.0f} ms ({probe.slow[node_id]})"
            for node_id, worst in probe.worst.items()
        )
    )
    if probe.slowest:
        print(
            "scale: the slowest ones (to set beside the nodes' logs): "
            + ", ".join(
                f"{node} {seconds * 1000:.0f} ms at {at}" for seconds, at, node in probe.slowest
            )
        )
    lines = snapshot_log_lines(cluster)
    print(f"scale: {len(lines)} automatic snapshot log lines during loading; the last ones:")
    for line in lines[-10:]:
        print(f"scale:   {line}")
    for node in cluster.nodes:
        print(f"scale: {node.id} RSS {rss_mib(cluster.pid(node.id)):.0f} MiB")
    # Snapshot size and time of the same state, measured on the state machine in this process.
    machine = loaded_machine(sessions, per_session)
    t0 = time.perf_counter()
    data = machine.snapshot()
    t1 = time.perf_counter()
    LockStateMachine().restore(data, machine.applied_index)
    t2 = time.perf_counter()
    print(
        f"scale: snapshot {len(data) / 2**20:.1f} MiB, serialise {t1 - t0:.2f}s, "
        f"restore {t2 - t1:.2f}s"
    )
    leader_id = await asyncio.to_thread(cluster.wait_for_leader)
    follower = next(n for n in cluster.nodes if n.id != leader_id)
    cluster.kill(follower.id)
    cluster.start(follower.id)
    restarted = time.monotonic()
    await asyncio.to_thread(wait_caught_up, cluster, follower.id, 300.0)
    print(
        f"scale: restarted {follower.id} caught up in {time.monotonic() - restarted:.1f}s "
        f"(WAL replay + snapshot restore + log catch-up)"
    )


async def main_async(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        tmp = Path(args.dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_")))
        lockd = stack.enter_context(
            LocalCluster(tmp / "lockd", size=5, base_port=args.lockd_port, fsync=True)
        )
        lockd.start_all()
        connects: dict[str, Connect] = {"lockd": lockd_connect(lockd.endpoints)}
        bystanders = Bystanders(pause=args.pause_idle)
        bystanders.add(
            "lockd", lambda: [lockd.pid(n.id) for n in lockd.nodes], lockd.wait_for_leader
        )
        etcd: EtcdCluster | None = None
        if args.etcd:
            (tmp / "etcd").mkdir(parents=True, exist_ok=True)
            etcd = stack.enter_context(EtcdCluster(tmp / "etcd"))
            await asyncio.to_thread(etcd.start_all)
            connects["etcd"] = etcd_connect(etcd.endpoints)
            bystanders.add(
                "etcd", lambda: [p.pid for p in etcd.processes.values()], etcd.wait_for_leader
            )
        await asyncio.sleep(0.5)
        systems = list(connects)
        print(
            f"benchmark: {' and '.join(systems)}, 5 nodes each on loopback, fsync on, "
            f"{args.seconds:g}s per figure, median of {args.repeat}; driver on {args.loop}; "
            f"the other system {'paused' if args.pause_idle else 'left running'} during a figure"
        )
        figures: dict[tuple[str, str], float] = {}
        for clients in (1, 8, 32):
            for system in systems:
                runs = []
                for _ in range(args.repeat):
                    async with bystanders.measuring(system):
                        runs.append(await uncontended(connects[system], clients, args.seconds))
                rate = statistics.median(r for r, _ in runs)
                latencies = sorted(x for _, lat in runs for x in lat)
                p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
                figures[(system, f"pairs/s, {clients} clients")] = rate
                print(
                    f"{system:5} uncontended {clients:>2} clients: {rate:7.0f} pairs/s   "
                    f"acquire p50 {p50:.1f} ms  p99 {p99:.1f} ms   runs "
                    f"{[round(r) for r, _ in runs]}"
                )
        for system in systems:
            rates = []
            for _ in range(args.repeat):
                async with bystanders.measuring(system):
                    rates.append(await contended(connects[system], 8, args.seconds))
            figures[(system, "hand-offs/s, 8 clients")] = statistics.median(rates)
            print(
                f"{system:5} contended 8 clients on one lock: {statistics.median(rates):.0f} "
                f"hand-offs/s   runs {[round(r) for r in rates]}"
            )
        for system in systems:
            if args.failovers <= 0:
                break
            gaps = []
            for _ in range(args.failovers):
                async with bystanders.measuring(system):
                    if system == "lockd":
                        gaps.append(await failover(lockd))
                    else:
                        assert etcd is not None
                        gaps.append(await etcd_failover(etcd))
            figures[(system, "failover median s")] = statistics.median(gaps)
            figures[(system, "failover max s")] = max(gaps)
            print(
                f"{system:5} failover after kill -9 of the leader ({len(gaps)} trials): median "
                f"{statistics.median(gaps):.2f}s  max {max(gaps):.2f}s  "
                f"all {[round(g, 2) for g in gaps]}"
            )
        if etcd is not None:
            print(bystanders.summary())
            print_comparison(figures)
        if args.scale:
            await scale(lockd, args.sessions, args.locks)


TARGETS = {
    "pairs/s, 8 clients": ("ratio", 2.0),
    "pairs/s, 32 clients": ("ratio", 2.0),
    "hand-offs/s, 8 clients": ("ratio", 5.0),
    "failover median s": ("lockd", 0.5),
    "failover max s": ("lockd", 1.0),
}


def print_comparison(figures: dict[tuple[str, str], float]) -> None:
    """One table: both systems, lockd/etcd, and whether issue 4's target holds in this run."""
    print(f"\n{'figure':26} {'lockd':>8} {'etcd':>8} {'lockd/etcd':>10}  target")
    for name in dict.fromkeys(n for _, n in figures):
        mine, theirs = figures.get(("lockd", name)), figures.get(("etcd", name))
        if mine is None or theirs is None:
            continue
        ratio = mine / theirs if theirs else float("nan")
        target = ""
        if name in TARGETS:
            kind, bound = TARGETS[name]
            met = ratio >= bound if kind == "ratio" else mine <= bound
            wanted = f">= {bound:g}x etcd" if kind == "ratio" else f"lockd <= {bound:g} s"
            target = f"{wanted}: {'met' if met else 'NOT met'}"
        print(f"{name:26} {mine:8.2f} {theirs:8.2f} {ratio:10.2f}  {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each figure")
    parser.add_argument("--failovers", type=int, default=5, help="kill -9 trials")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median)")
    parser.add_argument(
        "--etcd", action=argparse.BooleanOptionalAction, default=True,
        help=f"run a five-member etcd ({ETCD_BINARY}) side by side (default on)",
    )  # fmt: skip
    parser.add_argument("--scale", action="store_true", help="also the sessions/locks scale run")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--locks", type=int, default=100_000)
    parser.add_argument("--dir", help="keep the cluster's data and logs here (default: a tmp dir)")
    parser.add_argument(
        "--lockd-port", type=int, default=BASE_PORT,
        help="first port of the lockd nodes (node i: +10*i client, +1 peer, +2 http)",
    )  # fmt: skip
    parser.add_argument(
        "--pause-idle", action=argparse.BooleanOptionalAction, default=True,
        help="SIGSTOP the system not being measured for each figure (default on)",
    )  # fmt: skip
    parser.add_argument(
        "--driver-loop", choices=event_loop.CHOICES, default="auto",
        help="the driver's event loop (both systems' clients; auto: uvloop when installed)",
    )  # fmt: skip
    args = parser.parse_args()
    args.loop = event_loop.resolve(args.driver_loop)
    event_loop.run(main_async(args), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
