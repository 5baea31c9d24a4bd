"""Runner throughput: 50 client processes on the in-process memory backend, pinned to one core.

Measures completed ops/s of the runner's client path (bench.runner.process: invoke, perform
under the per-op timeout, completion, workload update) with the history written to disk as in a
real run, and the same with a sink that only counts, to show what writing the history costs.
Trials alternate between the two so machine noise hits both alike; medians are printed.

    python -m benchmarks.runner [--seconds 3] [--trials 3] [--processes 50] [--resource]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.runner.process import ClientProcess, HistorySink
from benchmarks.drivers.counting_history import CountingHistory
from lockbench.history_writer import HistoryWriter
from tests.support.memory_runner import mutex_on_memory
from workloads.resource import ResourceClient, ResourceServer


async def one_trial(
    history: HistorySink, seconds: float, processes: int, use_resource: bool, tmp: Path
) -> tuple[float, float]:
    """Ops completed per wall-clock second and per CPU second over ``seconds`` of driving.

    Per CPU second is the figure that means "on one core" on a shared machine: other
    processes' load stretches wall time but not this process's CPU time.
    """
    server: ResourceServer | None = None
    resource: ResourceClient | None = None
    if use_resource:
        server = ResourceServer("fenced", None)
        await server.start("127.0.0.1", 0)
        resource = ResourceClient(*server.address)
    run = mutex_on_memory(
        tmp,
        history,
        processes=processes,
        mutex_options={"locks": 200, "hold": 0.0, "think": 0.0, "use_resource": use_resource},
        resource=resource,
    )
    clients = [ClientProcess(run.driver, slot) for slot in range(processes)]
    loop = asyncio.get_running_loop()
    loop.call_later(seconds, run.stop.set)
    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(c.run() for c in clients))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    await asyncio.gather(*(c.close() for c in clients))
    run.close()
    if resource is not None and server is not None:
        await resource.close()
        await server.stop()
    return run.stats.completed / elapsed, run.stats.completed / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--resource", action="store_true", help="critical sections touch it")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    written: list[tuple[float, float]] = []
    counted: list[tuple[float, float]] = []
    lines = 0
    with tempfile.TemporaryDirectory(prefix="lbr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for trial in range(args.trials):
            for write in (True, False) if trial % 2 == 0 else (False, True):
                sink: HistorySink
                if write:
                    path = tmp / f"history-{trial}.jsonl"
                    sink = writer = HistoryWriter(path)
                else:
                    sink = CountingHistory()
                rates = asyncio.run(
                    one_trial(sink, args.seconds, args.processes, args.resource, tmp)
                )
                if write:
                    writer.close()
                    lines = sum(1 for _ in path.open())
                    written.append(rates)
                else:
                    counted.append(rates)
    resource = "with" if args.resource else "without"
    print(
        f"runner, memory backend, {args.processes} processes, pinned to cpu {args.cpu}, "
        f"mutex {resource} the protected resource, {args.trials} trials x {args.seconds:g} s"
    )
    for label, index in (("per CPU second (one core)", 1), ("per wall-clock second", 0)):
        with_history = statistics.median(r[index] for r in written)
        without = statistics.median(r[index] for r in counted)
        print(f"  ops {label}:")
        print(f"    history written : median {with_history:,.0f}  {_fmt(written, index)}")
        print(f"    history counted : median {without:,.0f}  {_fmt(counted, index)}")
        print(f"    writing cost    : {1 - with_history / without:.1%} of throughput")
    print(f"  last history file: {lines} lines")


def _fmt(values: list[tuple[float, float]], index: int) -> str:
    return "(" + ", ".join(f"{v[index]:,.0f}" for v in values) + ")"


if __name__ == "__main__":
    main()
