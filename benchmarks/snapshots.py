#!/usr/bin/env python3
"""What an automatic snapshot costs lockd's event loop: in process against a forked child.

For LockStateMachine states of growing size (sessions with 10 held locks each) it prints the
process's RSS, the snapshot's size, how long ``snapshot()`` blocks the loop when called in
process, and for the forked child (reference_impl/server/snapshotter.py): the ``fork()`` call,
the longest the loop stalled while the child ran (a 1 ms sleeper measures it), the child's own
serialisation time and the time until the result was in the parent's hands. Medians of --repeat
runs. The in-process threshold (``IN_PROCESS_MAX_SECONDS``) is chosen from these figures.

    python -m benchmarks.snapshots
    python -m benchmarks.snapshots --sessions 10 100 1000 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from benchmarks.drivers.lock_state import LOCKS_PER_SESSION, loaded_machine
from benchmarks.drivers.proc import rss_mib
from reference_impl.server.snapshotter import IN_PROCESS_MAX_SECONDS, Snapshotter
from reference_impl.service.state_machine import LockStateMachine


async def child_run(machine: LockStateMachine) -> tuple[float, float, float, float]:
    """One forked snapshot: (fork s, worst loop stall s, child's serialisation s, until done s)."""
    done = asyncio.Event()
    snapshots = Snapshotter("bench", machine.snapshot, done.set)
    worst = 0.0
    started = time.perf_counter()
    assert snapshots.start(machine.applied_index) is None
    while not done.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
    elapsed = time.perf_counter() - started
    taken = snapshots.take_result()
    if taken is None:
        raise RuntimeError("the snapshot child failed; see the log")
    assert snapshots.last_fork_seconds is not None
    return snapshots.last_fork_seconds, worst, taken.serialise_seconds, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args()
    print(
        f"sessions x {LOCKS_PER_SESSION} locks; medians of {args.repeat}; in-process threshold "
        f"{IN_PROCESS_MAX_SECONDS * 1000:g} ms"
    )
    print(
        f"{'sessions':>8} {'locks':>7} {'RSS MiB':>8} {'snap MiB':>8} {'in-process ms':>13} "
        f"{'fork ms':>8} {'child: loop stall ms':>20} {'serialise ms':>12} {'done ms':>8}"
    )
    for sessions in args.sessions:
        machine = loaded_machine(sessions)
        in_process = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            data = machine.snapshot()
            in_process.append(time.perf_counter() - started)
        runs = [asyncio.run(child_run(machine)) for _ in range(args.repeat)]
        columns = zip(*runs, strict=True)
        fork, stall, serialise, done = (statistics.median(column) * 1000 for column in columns)
        print(
            f"{sessions:>8} {sessions * LOCKS_PER_SESSION:>7} {rss_mib():>8.0f} "
            f"{len(data) / 2**20:>8.2f} {statistics.median(in_process) * 1000:>13.2f} "
            f"{fork:>8.2f} {stall:>20.2f} {serialise:>12.2f} {done:>8.2f}"
        )
        del machine, data
    return 0


if __name__ == "__main__":
    sys.exit(main())
