#!/usr/bin/env python3
"""Benchmark lockd: a five-node cluster on loopback with fsync, driven by one asyncio process.

Prints: uncontended acquire+release pairs/s at 1/8/32 clients (each on its own lock) with
p50/p99 acquire latency, contended hand-offs/s with 8 clients on one lock, failover time after
kill -9 of the leader (gap until the next successful acquire; median and max over N trials), and
with --scale the memory, snapshot and catch-up figures for many sessions and held locks.

    python scripts/bench_lockd.py                  # about a minute
    python scripts/bench_lockd.py --seconds 10 --failovers 5 --scale
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.connection import Connection, ServerError
from reference_impl.client.errors import LockServiceError
from reference_impl.server.local_cluster import LocalCluster
from reference_impl.service.commands import Acquire, OpenSession, encode_command
from reference_impl.service.state_machine import LockStateMachine

BASE_PORT = 25500  # task F owns 25000-25999: etcd at 25000+, lockd at 25500+


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def uncontended(
    endpoints: list[str], clients: int, seconds: float
) -> tuple[float, list[float]]:
    sessions = [await AsyncLockClient.connect(endpoints, ttl=30.0) for _ in range(clients)]
    latencies: list[float] = []
    pairs = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int, client: AsyncLockClient) -> None:
        nonlocal pairs
        name = f"bench/own/{i}"
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await client.acquire(name, timeout=10.0)
            latencies.append(time.perf_counter() - started)
            await client.release(name)
            pairs += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(sessions)))
    elapsed = time.monotonic() - started
    for client in sessions:
        await client.close()
    return pairs / elapsed, latencies


async def contended(endpoints: list[str], clients: int, seconds: float) -> float:
    sessions = [await AsyncLockClient.connect(endpoints, ttl=30.0) for _ in range(clients)]
    grants = 0
    deadline = time.monotonic() + seconds

    async def worker(client: AsyncLockClient) -> None:
        nonlocal grants
        while time.monotonic() < deadline:
            await client.acquire("bench/contended", timeout=10.0)
            grants += 1
            await client.release("bench/contended")

    started = time.monotonic()
    await asyncio.gather(*(worker(c) for c in sessions))
    elapsed = time.monotonic() - started
    for client in sessions:
        await client.close()
    return grants / elapsed


async def failover(cluster: LocalCluster) -> float:
    leader = cluster.wait_for_leader()
    survivors = [n.endpoint for n in cluster.nodes if n.id != leader]
    client = await AsyncLockClient.connect(cluster.endpoints, ttl=30.0, timeout=1.0)
    await client.acquire("bench/failover", timeout=5.0)
    await client.release("bench/failover")
    client.endpoints = [*survivors, cluster.node(leader).endpoint]
    killed = time.monotonic()
    cluster.kill(leader)
    while True:
        try:
            await client.acquire("bench/failover", timeout=1.0)
            gap = time.monotonic() - killed
            await client.release("bench/failover")
            break
        except LockServiceError:
            await asyncio.sleep(0.005)
    await client.close()
    cluster.start(leader)
    await asyncio.to_thread(wait_caught_up, cluster, leader, 60.0)
    return gap


def wait_caught_up(cluster: LocalCluster, node_id: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        leader = cluster.leader()
        mine, theirs = cluster.status(node_id), cluster.status(leader) if leader else None
        if mine and theirs and int(str(mine["applied_index"])) >= int(str(theirs["commit_index"])):
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{node_id} did not catch up within {timeout}s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def scale(cluster: LocalCluster, sessions: int, locks: int) -> None:
    endpoint = cluster.node(cluster.wait_for_leader()).endpoint
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
    for connection in connections:
        await connection.close()
    print(
        f"scale: {sessions} sessions and {sessions * per_session} held locks loaded in "
        f"{loaded:.1f}s ({(sessions + sessions * per_session) / loaded:.0f} writes/s, "
        f"256 in flight, {retries} retried across leader changes)"
    )
    for node in cluster.nodes:
        print(f"scale: {node.id} RSS {rss_mib(cluster.pid(node.id)):.0f} MiB")
    # Snapshot size and time of the same state, measured on the state machine in this process.
    machine = LockStateMachine()
    index = 0

    for i in range(sessions):
        index += 1
        machine.apply(index, encode_command(OpenSession(f"c{i}", 1, 3600.0, 0.0)))
        session = f"s{index}"
        for j in range(per_session):
            index += 1
            machine.apply(index, encode_command(
                Acquire(f"c{i}", 2 + j, session, f"scale/{i}/{j}", False, False)))  # fmt: skip
    t0 = time.perf_counter()
    data = machine.snapshot()
    t1 = time.perf_counter()
    LockStateMachine().restore(data, index)
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
    with (
        tempfile.TemporaryDirectory(prefix="bench_lockd_") as tmp,
        LocalCluster(Path(args.dir or tmp), size=5, base_port=BASE_PORT, fsync=True) as cluster,
    ):
        cluster.start_all()
        await asyncio.sleep(0.5)
        print(f"lockd benchmark: 5 nodes on loopback, fsync on, {args.seconds:.0f}s per figure")
        for clients in (1, 8, 32):
            rate, latencies = await uncontended(cluster.endpoints, clients, args.seconds)
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"uncontended {clients:>2} clients: {rate:7.0f} pairs/s   "
                f"acquire p50 {p50:.1f} ms  p99 {p99:.1f} ms"
            )
        handoffs = await contended(cluster.endpoints, 8, args.seconds)
        print(f"contended 8 clients on one lock: {handoffs:.0f} hand-offs/s")
        gaps = [await failover(cluster) for _ in range(args.failovers)]
        if gaps:
            print(
                f"failover after kill -9 of the leader ({len(gaps)} trials): median "
                f"{statistics.median(gaps):.2f}s  max {max(gaps):.2f}s  "
                f"all {[round(g, 2) for g in gaps]}"
            )
        if args.scale:
            await scale(cluster, args.sessions, args.locks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each figure")
    parser.add_argument("--failovers", type=int, default=5, help="kill -9 trials")
    parser.add_argument("--scale", action="store_true", help="also the sessions/locks scale run")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--locks", type=int, default=100_000)
    parser.add_argument("--dir", help="keep the cluster's data and logs here (default: a tmp dir)")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
