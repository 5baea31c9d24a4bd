"""What recording lease lapses costs: the runner's check before each holder step, and the checker.

1. CPU per ``ClientDriver.check_lease`` call on a holder step with a safe lease (the common case:
   a dict lookup in the workload's plan, then the client's ``lease_deadline``), memory backend.
2. The linearizable checker on a synthetic lock history (processes taking turns on few locks)
   with no ``lease-lost`` records and with one per 100 grants: the expiries they add are
   optional ops the search may try.

    python scripts/bench_lease_lost.py [--calls 200000] [--cycles 5000] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.checker.options import CheckOptions
from bench.history import Op, OpType
from bench.runner.options import parse_options

from bench.backends.memory import MemoryBackend
from bench.checker.linearizable import check_linearizable
from bench.runner.cluster_setup import InProcessCluster
from bench.runner.history_sink import CountingHistory
from bench.runner.process import LEASE_LOST, ClientDriver, RunStats
from workloads.base import WorkloadContext
from workloads.mutex import MutexOptions, MutexWorkload

NS = 1_000_000_000


async def check_cost(calls: int, tmp: Path) -> float:
    """Microseconds of CPU per check_lease call when the process holds a lock (lease safe)."""
    options = parse_options(MutexOptions, {"locks": 1, "use_resource": False})
    workload = MutexWorkload(options, WorkloadContext(1, 1, 10.0, ("bench",)))
    backend = MemoryBackend()
    cluster = InProcessCluster(tmp / "node")
    driver = ClientDriver(
        workload=workload,
        backend=backend,
        cluster=cluster,
        history=CountingHistory(),
        stats=RunStats(),
        concurrency=1,
        op_timeout=5.0,
        ttl=10.0,
        stop=asyncio.Event(),
    )
    client = await backend.open_client(cluster, cluster.nodes[0], ttl=10.0, process=0)
    acquire = workload.next_op(0)
    assert acquire is not None and acquire.key is not None
    grant = await client.acquire(acquire.key, timeout=1.0)
    workload.update(0, acquire, "ok", grant.token)  # the next step is the release: a holder step
    started = time.process_time()
    for _ in range(calls):
        recorded = driver.check_lease(client, 0, "bench")
    elapsed = time.process_time() - started
    assert not recorded
    await client.close()
    backend.stop(cluster.nodes[0])
    return elapsed / calls * 1e6


def lock_history(cycles: int, processes: int, locks: int, lost_every: int) -> list[Op]:
    """Each cycle: a process acquires a lock, and releases it (or records lease-lost first and
    its release is unknown, and a fresh process takes its place)."""
    ops: list[Op] = []
    t = 0

    def add(
        process: int, typ: OpType, f: str, key: str, value: object, session: str | None = None
    ) -> None:
        nonlocal t
        t += 1_000_000
        ops.append(Op(len(ops), t, process, typ, f, key, value, session=session))

    ids = list(range(processes))
    for cycle in range(cycles):
        slot = cycle % processes
        p = ids[slot]
        key = f"lock/{cycle % locks}"
        add(p, "invoke", "acquire", key, {"timeout": 1.0})
        add(p, "ok", "acquire", key, cycle + 1, session=f"s{p}")  # the fencing token
        if lost_every and cycle % lost_every == lost_every - 1:
            since = {"since": t + 500_000}
            add(p, "invoke", LEASE_LOST, key, since, session=f"s{p}")
            add(p, "ok", LEASE_LOST, key, since, session=f"s{p}")
            add(p, "invoke", "release", key, None)
            add(p, "info", "release", key, None)
            ids[slot] = p + processes
        else:
            add(p, "invoke", "release", key, None)
            add(p, "ok", "release", key, None)
    return ops


def check_seconds(history: list[Op], trials: int) -> float:
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        result = check_linearizable(history, CheckOptions())
        times.append(time.perf_counter() - started)
        assert result.verdict == "valid", result
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--cycles", type=int, default=5_000)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbl-bench-") as tmp:
        costs = [asyncio.run(check_cost(args.calls, Path(tmp))) for _ in range(args.trials)]
    print(f"check_lease on a holder step, lease safe: median {statistics.median(costs):.2f} us CPU")
    for lost_every in (0, 100):
        history = lock_history(args.cycles, processes=10, locks=3, lost_every=lost_every)
        records = sum(1 for op in history if op.f == LEASE_LOST) // 2
        seconds = check_seconds(history, args.trials)
        print(
            f"linearizable, {len(history)} records, {records} lease-lost: "
            f"median {seconds:.3f} s over {args.trials} trials"
        )


if __name__ == "__main__":
    main()
