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

    python scripts/bench_lockd.py                  # a few minutes
    python scripts/bench_lockd.py --seconds 5 --repeat 3 --failovers 5
    python scripts/bench_lockd.py --no-etcd --scale
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from bench_snapshots import loaded_machine

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.connection import Connection, ServerError
from reference_impl.client.errors import LockServiceError
from reference_impl.server import event_loop
from reference_impl.server.local_cluster import LocalCluster
from reference_impl.service.state_machine import LockStateMachine

BASE_PORT = 25500  # task F owns 25000-25999: etcd at 25000+, lockd at 25500+
ETCD_BASE_PORT = 25000
ETCD_BINARY = "/usr/bin/etcd"


class BenchClient(Protocol):
    """What the driver needs of a lock client: lockd's AsyncLockClient or EtcdLockClient."""

    async def acquire(self, name: str, *, timeout: float) -> Any: ...

    async def release(self, name: str) -> None: ...

    async def close(self) -> None: ...


Connect = Callable[[], Awaitable[BenchClient]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def lockd_connect(endpoints: list[str]) -> Connect:
    async def connect() -> BenchClient:
        return await AsyncLockClient.connect(endpoints, ttl=30.0)

    return connect


def etcd_connect(endpoints: list[str]) -> Connect:
    async def connect() -> BenchClient:
        return await EtcdLockClient.connect(endpoints, ttl=30)

    return connect


async def uncontended(connect: Connect, clients: int, seconds: float) -> tuple[float, list[float]]:
    sessions = [await connect() for _ in range(clients)]
    latencies: list[float] = []
    pairs = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int, client: BenchClient) -> None:
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


async def contended(connect: Connect, clients: int, seconds: float) -> float:
    sessions = [await connect() for _ in range(clients)]
    grants = 0
    deadline = time.monotonic() + seconds

    async def worker(client: BenchClient) -> None:
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


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


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
        before = {pid: cpu_seconds(pid) for pids in others.values() for pid in pids}
        started = time.monotonic()
        if self.pause:
            for pid in before:
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            for name, pids in others.items():
                used = sum(cpu_seconds(pid) - before[pid] for pid in pids)
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric_total(cluster: LocalCluster, node_id: str, name: str) -> float:
    """One counter from a node's /metrics (nan when the node does not answer)."""
    node = cluster.node(node_id)
    try:
        with urllib.request.urlopen(
            f"http://{node.host}:{node.http_port}/metrics", timeout=2.0
        ) as response:
            text = response.read().decode()
    except OSError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
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


# ---------------------------------------------------------------------------------------------
# etcd side by side: five real members (Debian etcd-server 3.4) driven through the JSON gateway


class EtcdError(RuntimeError):
    """An etcd gateway call failed (HTTP status and body in the message)."""


class EtcdHttp:
    """One keep-alive HTTP/1.1 connection to an etcd member's JSON gateway (asyncio, no deps)."""

    def __init__(self, endpoint: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, endpoint: str, timeout: float = 2.0) -> EtcdHttp:
        host, port = endpoint.rsplit(":", 1)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, int(port))
        return cls(endpoint, reader, writer)

    async def post(self, path: str, body: dict[str, object], timeout: float) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.endpoint}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self._writer.write(head.encode() + payload)
        async with asyncio.timeout(timeout):
            status_line = await self._reader.readline()
            if not status_line:
                raise EtcdError(f"{self.endpoint} closed the connection")
            length, chunked = 0, False
            while (line := await self._reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                parts = []
                while size := int((await self._reader.readline()).split(b";")[0], 16):
                    parts.append(await self._reader.readexactly(size))
                    await self._reader.readline()
                await self._reader.readline()
                data = b"".join(parts)
            else:
                data = await self._reader.readexactly(length)
        status = int(status_line.split()[1])
        if status != 200:
            raise EtcdError(f"{self.endpoint} {path}: HTTP {status}: {data[:200]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdLockClient:
    """The etcd counterpart of AsyncLockClient for the bench: a lease, lock and unlock."""

    def __init__(self, endpoints: list[str], timeout: float) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.http: EtcdHttp | None = None
        self.lease = ""
        self.keys: dict[str, str] = {}

    @classmethod
    async def connect(
        cls, endpoints: list[str], *, ttl: int = 30, timeout: float = 10.0
    ) -> EtcdLockClient:
        client = cls(endpoints, timeout)
        granted = await client._call("/v3/lease/grant", {"TTL": str(ttl)})
        client.lease = str(granted["ID"])
        return client

    async def _call(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        for endpoint in self.endpoints:
            try:
                if self.http is None:
                    self.http = await EtcdHttp.connect(endpoint)
                return await self.http.post(path, body, self.timeout)
            except (OSError, TimeoutError, EtcdError, asyncio.IncompleteReadError, ValueError):
                if self.http is not None:
                    await self.http.close()
                    self.http = None
        raise EtcdError(f"{path}: no member of {self.endpoints} answered")

    async def acquire(self, name: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        result = await self._call("/v3/lock/lock", {"name": b64(name), "lease": self.lease})
        self.keys[name] = str(result["key"])

    async def release(self, name: str) -> None:
        await self._call("/v3/lock/unlock", {"key": self.keys.pop(name)})

    async def close(self) -> None:
        if self.http is not None:
            with contextlib.suppress(EtcdError, OSError, TimeoutError):
                await self.http.post("/v3/lease/revoke", {"ID": self.lease}, 2.0)
            await self.http.close()
            self.http = None


class EtcdCluster:
    """Five etcd members on loopback, each with its own data dir (fsync on, etcd's default).

    Member i listens for clients on ``base_port + 10*i`` and for peers on ``+1``. Stopped by PID
    (SIGTERM, then SIGKILL); the data dirs live under ``directory`` and are removed on exit.
    """

    def __init__(self, directory: Path, *, size: int = 5, base_port: int = ETCD_BASE_PORT):
        self.directory = directory
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client_ports = {n: base_port + 10 * i for i, n in enumerate(self.names)}
        self.peer_ports = {n: base_port + 10 * i + 1 for i, n in enumerate(self.names)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def endpoint(self, name: str) -> str:
        return f"127.0.0.1:{self.client_ports[name]}"

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in self.names]

    def start(self, name: str) -> None:
        peers = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        client_url = f"http://{self.endpoint(name)}"
        peer_url = f"http://127.0.0.1:{self.peer_ports[name]}"
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [ETCD_BINARY, "--name", name, "--data-dir", str(self.directory / f"{name}.etcd"),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", peers, "--initial-cluster-state", "new",
             "--initial-cluster-token", "lockbench-bench", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def start_all(self, timeout: float = 30.0) -> str:
        for name in self.names:
            self.start(name)
        return self.wait_for_leader(timeout)

    def leader(self) -> str | None:
        """The member that reports itself as leader (maintenance/status), or None."""
        for name in self.names:
            if name in self.processes and self.processes[name].poll() is None:
                try:
                    status = _http_json(f"http://{self.endpoint(name)}/v3/maintenance/status", {})
                except (OSError, ValueError):
                    continue
                if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                    return name
        return None

    def wait_for_leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (leader := self.leader()) is not None:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no etcd leader within {timeout}s; see {self.directory}/*.log")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = {}
        for name in self.names:
            shutil.rmtree(self.directory / f"{name}.etcd", ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def _http_json(url: str, body: dict[str, object], timeout: float = 1.0) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def etcd_failover(cluster: EtcdCluster) -> float:
    leader = await asyncio.to_thread(cluster.wait_for_leader)
    survivors = [cluster.endpoint(n) for n in cluster.names if n != leader]
    client = await EtcdLockClient.connect([*survivors, cluster.endpoint(leader)], timeout=1.0)
    await client.acquire("bench/failover", timeout=5.0)
    await client.release("bench/failover")
    killed = time.monotonic()
    cluster.kill(leader)
    while True:
        try:
            await client.acquire("bench/failover", timeout=1.0)
            gap = time.monotonic() - killed
            await client.release("bench/failover")
            break
        except (EtcdError, KeyError):
            await asyncio.sleep(0.005)
    await client.close()
    cluster.start(leader)
    await asyncio.to_thread(cluster.wait_for_leader)
    await asyncio.sleep(1.0)  # let the restarted member catch up before the next trial
    return gap


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
