#!/usr/bin/env python3
"""What mutual TLS on the Raft peer links costs: proposals/s of a 3-node Replica group on loopback
(ports 27300-27399) with plain TCP and with peer TLS, alternating in one run, medians of
``--rounds`` trials per mode and concurrency. The leader's fsync stays on (lockd's default).

Every trial is bounded by a proposal count and a time limit. Prints figures for
docs/performance.md. Usage: python scripts/bench_peer_tls.py [--rounds 3 --seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reference_impl" / "server"))

from peer_certs import CertificateAuthority  # noqa: E402

from reference_impl.server.peer_tls import peer_tls_contexts  # noqa: E402
from reference_impl.server.peer_transport import PeerTlsContexts  # noqa: E402
from reference_impl.server.replica import Replica  # noqa: E402

BASE_PORT = 27300
NODES = ("n1", "n2", "n3")
MAX_PROPOSALS_PER_TRIAL = 200_000


class NullMachine:
    def apply(self, index: int, data: bytes) -> int:
        return index

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes, index: int) -> None:
        return None


async def trial(
    directory: Path,
    port: int,
    tls: dict[str, PeerTlsContexts] | None,
    concurrency: int,
    seconds: float,
) -> tuple[float, float]:
    """(proposals/s, p50 latency in ms) of one fresh group for ``seconds``."""
    peers = {node_id: ("127.0.0.1", port + i) for i, node_id in enumerate(NODES)}
    replicas = [
        Replica(
            node_id,
            peers,
            directory / node_id,
            NullMachine(),
            peer_tls=tls[node_id] if tls else None,
        )
        for node_id in NODES
    ]
    try:
        for replica in replicas:
            await replica.start()
        deadline = time.monotonic() + 10
        while not any(r.is_leader for r in replicas):
            if time.monotonic() > deadline:
                raise RuntimeError("no leader within 10 s")
            await asyncio.sleep(0.02)
        leader = next(r for r in replicas if r.is_leader)
        await leader.propose(b"warm-up", timeout=5)
        latencies: list[float] = []
        stop_at = time.monotonic() + seconds
        per_worker = MAX_PROPOSALS_PER_TRIAL // concurrency

        async def worker(worker_id: int) -> None:
            for i in range(per_worker):
                if time.monotonic() > stop_at:
                    return
                begun = time.perf_counter()
                await leader.propose(b"w%d-%d" % (worker_id, i), timeout=5)
                latencies.append(time.perf_counter() - begun)

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - started
        return len(latencies) / wall, statistics.median(latencies) * 1e3
    finally:
        for replica in replicas:
            await replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="trials per mode (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a trial")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 32], help="proposers (default 1 32)"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    print(f"# python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as raw:
        directory = Path(raw)
        ca = CertificateAuthority.create(directory / "pki")
        tls = {node_id: peer_tls_contexts(ca.issue(node_id), node_id) for node_id in NODES}
        trial_number = 0
        for concurrency in args.concurrency:
            results: dict[str, list[tuple[float, float]]] = {"plain": [], "tls": []}
            for _ in range(args.rounds):
                for mode in ("plain", "tls"):
                    trial_number += 1
                    port = BASE_PORT + 3 * (trial_number % 30)
                    results[mode].append(
                        asyncio.run(
                            trial(
                                directory / f"t{trial_number}",
                                port,
                                tls if mode == "tls" else None,
                                concurrency,
                                args.seconds,
                            )
                        )
                    )
            medians = {
                mode: (
                    statistics.median(rate for rate, _ in runs),
                    statistics.median(p50 for _, p50 in runs),
                )
                for mode, runs in results.items()
            }
            for mode, (rate, p50) in medians.items():
                each = " ".join(f"{r:.0f}" for r, _ in results[mode])
                print(
                    f"3 nodes, {concurrency:3d} proposers, {mode:5s}: {rate:7.0f} proposals/s "
                    f"(median of {each}), p50 {p50:.2f} ms"
                )
            ratio = medians["tls"][0] / medians["plain"][0]
            print(f"3 nodes, {concurrency:3d} proposers: TLS/plain throughput {ratio:.2f}")


if __name__ == "__main__":
    main()
