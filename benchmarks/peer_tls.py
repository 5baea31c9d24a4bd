#!/usr/bin/env python3
"""What mutual TLS on the Raft peer links costs: proposals/s of a 3-node Replica group on loopback
(ports 27300-27399) with plain TCP and with peer TLS, alternating in one run, medians of
``--rounds`` trials per mode and concurrency. The leader's fsync stays on (lockd's default).

Every trial is bounded by a proposal count and a time limit. Prints figures for
docs/performance.md. Usage: python -m benchmarks.peer_tls [--rounds 3 --seconds 2]
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

from benchmarks.drivers.openssl_certs import make_peer_certificates
from benchmarks.drivers.replica_group import propose_load, replica_group
from reference_impl.server.peer_tls import peer_tls_contexts
from reference_impl.server.peer_transport import PeerTlsContexts

BASE_PORT = 27300
NODES = ("n1", "n2", "n3")
MAX_PROPOSALS_PER_TRIAL = 200_000


async def trial(
    directory: Path,
    port: int,
    tls: dict[str, PeerTlsContexts] | None,
    concurrency: int,
    seconds: float,
) -> tuple[float, float]:
    """(proposals/s, p50 latency in ms) of one fresh group for ``seconds``."""
    async with replica_group(directory, NODES, port, peer_tls=tls) as leader:
        await leader.propose(b"warm-up", timeout=5)
        latencies, wall = await propose_load(leader, concurrency, MAX_PROPOSALS_PER_TRIAL, seconds)
        return len(latencies) / wall, statistics.median(latencies) * 1e3


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
        certificates = make_peer_certificates(directory / "pki", list(NODES))
        tls = {node_id: peer_tls_contexts(certificates[node_id], node_id) for node_id in NODES}
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
