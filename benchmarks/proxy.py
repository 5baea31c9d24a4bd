"""Benchmark the local runtime's link proxy: its cost on a link, its faults, and lockd failover.

Prints round trips (direct vs through the proxy, healthy and with 20 ms delay), bulk throughput,
and, with a five-node lockd cluster on the local runtime, how long after isolating the leader the
majority elects a new one and how long after healing all five follow one leader. Every loop is
bounded in count and time; ports 23500-23720 only. Usage:

    python -m benchmarks.proxy                 # everything (deploys lockd: ~30 s more)
    python -m benchmarks.proxy --no-lockd --round-trips 1000
"""

from __future__ import annotations

import argparse
import functools
import socket
import socketserver
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.backends.reference import ReferenceBackend, ReferenceOptions, fetch_status
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.local import local_down, local_up
from benchmarks.stats import percentile
from lockbench.parallel import on_each_node

PROXY_OFFSET = 16500  # n1 23500/23501, link 23502, control 23503; n2 23510/23511, link 23512
LOCKD_OFFSET = 16600  # lockd ports 23600-23645, http 23680-23720
N1_PEER, N2_PEER = 7001 + PROXY_OFFSET, 7011 + PROXY_OFFSET
BULK_BYTES = 64 << 20
DEADLINE_S = 60.0


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1 << 16):
            self.request.sendall(data)


class Sink(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        total = 0
        while data := self.request.recv(1 << 20):
            total += len(data)
        self.request.sendall(str(total).encode())


def serve(port: int, handler: type[socketserver.BaseRequestHandler]) -> socketserver.TCPServer:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def round_trips_ms(port: int, count: int) -> list[float]:
    samples = []
    deadline = time.monotonic() + DEADLINE_S
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            conn.sendall(b"x" * 64)
            got = 0
            while got < 64:
                got += len(conn.recv(64 - got))
            samples.append((time.perf_counter() - start) * 1000)
            if time.monotonic() > deadline:
                break
    return samples


def throughput_mib_s(port: int) -> float:
    block = b"\0" * (1 << 20)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        for _ in range(BULK_BYTES // len(block)):
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        assert int(conn.recv(64)) == BULK_BYTES
    return BULK_BYTES / (1 << 20) / (time.perf_counter() - start)


def describe(name: str, samples: list[float]) -> str:
    p99 = percentile(samples, 0.99)
    return f"{name:<34} median {statistics.median(samples):7.3f} ms   p99 {p99:7.3f} ms"


def proxy_figures(round_trips: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        cluster_dir = Path(tmp) / "c"
        echo = serve(N2_PEER, Echo)
        sink = serve(N1_PEER, Sink)
        try:
            with open_cluster(local_up(cluster_dir, nodes=2, base_offset=PROXY_OFFSET)) as c:
                links = c.link_faults
                assert links is not None
                links.start_proxy({"n1": N1_PEER, "n2": N2_PEER})
                to_echo, to_sink = links.proxy_port("n1", "n2"), links.proxy_port("n2", "n1")
                print(describe("round trip, direct", round_trips_ms(N2_PEER, round_trips)))
                print(describe("round trip, through proxy", round_trips_ms(to_echo, round_trips)))
                links.set_quality([("n1", "n2")], delay_ms=20)
                delayed = round_trips_ms(to_echo, max(20, round_trips // 20))
                print(describe("round trip, proxy + 20 ms delay", delayed))
                links.set_quality([("n1", "n2")], delay_ms=20, jitter_ms=10)
                jittered = round_trips_ms(to_echo, max(20, round_trips // 20))
                print(describe("round trip, proxy + 20 +- 10 ms", jittered))
                links.heal()
                direct = throughput_mib_s(N1_PEER)
                proxied = throughput_mib_s(to_sink)
                print(f"{'bulk 64 MiB, direct':<34} {direct:7.0f} MiB/s")
                print(f"{'bulk 64 MiB, through proxy':<34} {proxied:7.0f} MiB/s")
        finally:
            local_down(cluster_dir)
            echo.shutdown()
            sink.shutdown()
            echo.server_close()
            sink.server_close()


def wait_until(found: Callable[[], str | None]) -> tuple[str, float]:
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        name = found()
        if name is not None:
            return name, time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"gave up after {DEADLINE_S} s")


def followed_leader(cluster: ClusterHandle, among: set[str], needed: int) -> str | None:
    seen = {n.name: fetch_status(n, timeout=0.5) for n in cluster.nodes if n.name in among}
    for name, status in seen.items():
        if status and status.get("role") == "leader":
            followers = [n for n, s in seen.items() if s and s.get("leader") == name]
            if len(followers) >= needed:
                return name
    return None


def lockd_figures(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-proxy-lockd-") as tmp:
        cluster_dir = Path(tmp) / "c"
        try:
            with open_cluster(local_up(cluster_dir, base_offset=LOCKD_OFFSET)) as cluster:
                links = cluster.link_faults
                assert links is not None
                backend = ReferenceBackend(ReferenceOptions(tick_ms=50))
                backend.deploy(cluster)
                on_each_node("start", cluster.nodes, backend.start)
                everyone = {n.name for n in cluster.nodes}
                elect, heal = [], []
                for _ in range(rounds):
                    old, _ = wait_until(lambda: followed_leader(cluster, everyone, 5))
                    others = everyone - {old}
                    links.partition({old: others, **{n: {old} for n in others}})
                    majority_leader = functools.partial(followed_leader, cluster, others, 3)
                    new, took = wait_until(majority_leader)
                    assert new != old
                    elect.append(took)
                    links.heal()
                    _, took = wait_until(lambda: followed_leader(cluster, everyone, 5))
                    heal.append(took)
                print(
                    f"lockd, 5 nodes, tick 50 ms, {rounds} rounds: isolate leader -> new leader "
                    f"median {statistics.median(elect):.2f} s (max {max(elect):.2f}); heal -> "
                    f"all 5 follow one leader median {statistics.median(heal):.2f} s "
                    f"(max {max(heal):.2f})"
                )
        finally:
            local_down(cluster_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="lockd isolate/heal rounds")
    parser.add_argument("--no-lockd", action="store_true", help="skip the lockd failover figures")
    args = parser.parse_args()
    proxy_figures(args.round_trips)
    if not args.no_lockd:
        lockd_figures(args.rounds)


if __name__ == "__main__":
    main()
