#!/usr/bin/env python3
"""fdatasync latency of small WAL batches: appended, or written into space filled ahead.

Why the WAL keeps zeros ahead of its records (reference_impl/storage/zeroed_tail.py): an append
grows the file, so its fdatasync also commits the new size through the filesystem's journal; an
overwrite of written blocks changes no metadata. Compares, with N processes writing at once (five,
like a cluster's nodes on one disk): ``append`` (O_APPEND), ``zeroed`` (pwrite into zeros written
and synced beforehand) and ``fallocated`` (pwrite into fallocate'd, unwritten extents). Prints
fsyncs/s in all and p50/p99 per fsync for each, rounds alternating. Bounded by --batches.

    python -m benchmarks.wal_fsync
    python -m benchmarks.wal_fsync --writers 1 --rounds 3 --dir /var/lib/lockd
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODES = ("append", "zeroed", "fallocated")


def writer(
    mode: str, path: Path, batches: int, size: int, results: multiprocessing.Queue[list[float]]
) -> None:
    record = os.urandom(size)
    room = batches * size + 4096
    if mode == "append":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if mode == "zeroed":
            os.pwrite(fd, bytes(room), 0)
        else:
            os.posix_fallocate(fd, 0, room)
        os.fsync(fd)
    latencies = []
    offset = 0
    try:
        for _ in range(batches):
            started = time.perf_counter()
            if mode == "append":
                os.write(fd, record)
            else:
                os.pwrite(fd, record, offset)
                offset += size
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    results.put(latencies)


def run(
    mode: str, directory: Path, writers: int, batches: int, size: int
) -> tuple[float, list[float]]:
    results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=writer, args=(mode, directory / f"{mode}-{i}.wal", batches, size, results)
        )
        for i in range(writers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    latencies = sorted(x for _ in processes for x in results.get(timeout=300))
    for process in processes:
        process.join()
    return writers * batches / (time.perf_counter() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=5, help="processes writing at once")
    parser.add_argument("--batches", type=int, default=1500, help="fsyncs per writer per round")
    parser.add_argument("--size", type=int, default=600, help="bytes per batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", help="where the files go (default: a tmp dir); the WAL's disk")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wal_fsync_", dir=args.dir) as tmp:
        print(
            f"{args.writers} writers, {args.batches} fdatasyncs of {args.size} bytes each per "
            f"round, in {tmp}"
        )
        p50s: dict[str, list[float]] = {mode: [] for mode in MODES}
        for round_ in range(1, args.rounds + 1):
            for mode in MODES:
                rate, latencies = run(mode, Path(tmp), args.writers, args.batches, args.size)
                p50 = latencies[len(latencies) // 2]
                p99 = latencies[int(len(latencies) * 0.99)]
                p50s[mode].append(p50)
                print(
                    f"round {round_} {mode:10} {rate:7.0f} fsyncs/s in all   p50 "
                    f"{p50 * 1e6:4.0f} us   p99 {p99 * 1e6:5.0f} us"
                )
        base = statistics.median(p50s["append"])
        for mode in MODES[1:]:
            ratio = statistics.median(p50s[mode]) / base
            print(f"{mode} p50 / append p50 (medians of rounds): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
