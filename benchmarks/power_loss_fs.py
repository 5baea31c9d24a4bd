"""What the power-loss filesystem costs lockd: acquire/release pairs/s with and without it.

Five lockd nodes on loopback (reference_impl.server.local_cluster, fsync on), each node's data
directory either plain or under nemesis/lazyfs.py (mounted as the power-loss fault mounts it).
Rounds alternate the order of the two setups; each figure is the median over rounds, and the
ratio is taken within this one run (the machine is shared and noisy). Needs root (FUSE mount).

    sudo .venv/bin/python -m benchmarks.power_loss_fs --rounds 3 --seconds 5 --clients 1,8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.drivers.lock_load import lockd_connect, uncontended
from nemesis import lazyfs
from reference_impl.server.local_cluster import LocalCluster

SETUPS = ("plain", "lazyfs")


@contextmanager
def lazyfs_mounts(directories: list[Path], source: Path) -> Iterator[None]:
    """Mount the filesystem over each directory; unmount (keeping the data) at the end."""
    processes = []
    try:
        for directory in directories:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(source), str(directory)],
                    stdout=subprocess.DEVNULL,
                )
            )
        for directory in directories:
            deadline = time.monotonic() + 10
            while not lazyfs.is_mounted(str(directory)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"lazyfs did not mount on {directory}")
                time.sleep(0.02)
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


async def measure(cluster: LocalCluster, clients: list[int], seconds: float) -> dict[int, float]:
    connect = lockd_connect(cluster.endpoints)
    await uncontended(connect, 1, 1.0)  # warm up: sessions, first WAL pages
    return {n: (await uncontended(connect, n, seconds))[0] for n in clients}


def one_figure(
    setup: str, root: Path, base_port: int, clients: list[int], seconds: float, source: Path
) -> dict[int, float]:
    cluster = LocalCluster(root, size=5, base_port=base_port)
    cluster.write_configs()
    data_dirs = [node.directory / "data" for node in cluster.nodes]
    for directory in data_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    mounts = lazyfs_mounts(data_dirs, source) if setup == "lazyfs" else _nothing()
    with mounts:
        try:
            cluster.start_all()
            return asyncio.run(measure(cluster, clients, seconds))
        finally:
            cluster.stop_all()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per figure")
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts")
    parser.add_argument("--base-port", type=int, default=18600)
    parser.add_argument(
        "--source",
        type=Path,
        default=Path(lazyfs.__file__),
        help="the filesystem program to mount (another version of nemesis/lazyfs.py)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: the filesystem mounts through /dev/fuse", file=sys.stderr)
        return 2
    clients = [int(c) for c in args.clients.split(",")]
    figures: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-power-loss-fs-") as tmp:
        for round_number in range(args.rounds):
            order = SETUPS if round_number % 2 == 0 else tuple(reversed(SETUPS))
            for setup in order:
                root = Path(tmp) / f"{setup}-{round_number}"
                result = one_figure(setup, root, args.base_port, clients, args.seconds, args.source)
                for n, rate in result.items():
                    figures.setdefault((setup, n), []).append(rate)
                    print(f"round {round_number + 1} {setup:6} {n:2} clients: {rate:7.1f} pairs/s")
    print("\nmedians over rounds (pairs/s); ratio lazyfs / plain: of the medians, and the median")
    print("of each round's own ratio (the two setups of a round ran back to back):")
    for n in clients:
        plain = statistics.median(figures[("plain", n)])
        lazy = statistics.median(figures[("lazyfs", n)])
        per_round = [
            lf / pl for lf, pl in zip(figures[("lazyfs", n)], figures[("plain", n)], strict=True)
        ]
        print(
            f"{n:2} clients: plain {plain:7.1f}  lazyfs {lazy:7.1f}  ratio {lazy / plain:.2f}"
            f"  per-round ratios {' '.join(f'{r:.2f}' for r in per_round)}"
            f" (median {statistics.median(per_round):.2f})"
        )
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
