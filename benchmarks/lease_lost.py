"""What recording lease lapses costs: the runner's check before each holder step, and the checker.

1. CPU per ``ClientDriver.check_lease`` call on a holder step with a safe lease (the common case:
   a dict lookup in the workload's plan, then the client's ``lease_deadline``), memory backend.
2. The linearizable checker on a synthetic lock history (processes taking turns on few locks)
   with no ``lease-lost`` records and with one per 100 grants: the expiries they add are
   optional ops the search may try.

    python -m benchmarks.lease_lost [--calls 200000] [--cycles 5000] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.checker.linearizable import check_linearizable
from bench.runner.process import LEASE_LOST
from benchmarks.drivers.counting_history import CountingHistory
from benchmarks.drivers.histories import lock_history
from lockbench.history import Op
from lockbench.options import CheckOptions
from tests.support.memory_runner import mutex_on_memory

NS = 1_000_000_000


async def check_cost(calls: int, tmp: Path) -> float:
    """Microseconds of CPU per check_lease call when the process holds a lock (lease safe)."""
    run = mutex_on_memory(
        tmp, CountingHistory(), processes=1, mutex_options={"locks": 1, "use_resource": False}
    )
    workload, backend, cluster, driver = run.workload, run.backend, run.cluster, run.driver
    client = await backend.open_client(cluster, cluster.nodes[0], ttl=10.0, process=0)
    acquire = workload.next_op(0)
    assert acquire is not None
    assert acquire.key is not None
    grant = await client.acquire(acquire.key, timeout=1.0)
    workload.update(0, acquire, "ok", grant.token)  # the next step is the release: a holder step
    started = time.process_time()
    for _ in range(calls):
        recorded = driver.check_lease(client, 0, "bench")
    elapsed = time.process_time() - started
    assert not recorded
    await client.close()
    run.close()
    return elapsed / calls * 1e6


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
