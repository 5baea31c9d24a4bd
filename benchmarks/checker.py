"""Benchmark the checkers on seeded histories from simulated correct and buggy services.

Each case runs in a fresh subprocess so its peak memory (ru_maxrss) is its own. Prints one line per
case: ops, verdict, check seconds (median of --repeat runs), peak RSS. Usage:

    python -m benchmarks.checker            # every case
    python -m benchmarks.checker --case mutex-100k --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.checking import run_checkers
from lockbench.history import Op
from tests.support.histories import lock_history, register_history


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    make: Callable[[], list[Op]]
    checkers: tuple[str, ...]
    options: dict[str, Any]
    histories: int = 1  # several histories of one shape, checked one after another
    max_repeat: int = 3  # long cases run once whatever --repeat says


CASES = [
    Case(
        "mutex-100k",
        "owned-mutex, 100,000 ops, 100 locks, 20 processes, 1% info",
        lambda: lock_history(seed=1, ops=100_000, locks=100, processes=20, info_rate=0.01),
        ("linearizable",),
        {"model": "owned-mutex"},
    ),
    Case(
        "fenced-mutex-100k-buggy",
        "fenced-mutex, 100,000 ops, 100 locks, 20 processes, 1% info, 0.1% double grants",
        lambda: lock_history(
            seed=2, ops=100_000, locks=100, processes=20, info_rate=0.01, bug_rate=0.001
        ),
        ("linearizable",),
        {"model": "fenced-mutex"},
    ),
    Case(
        "locks-100k-lin+mutex",
        "fenced-mutex (inferred) + mutual-exclusion on the 100k lock history: the second reuses "
        "the first's valid search (fenced-mutex refines owned-mutex)",
        lambda: lock_history(seed=1, ops=100_000, locks=100, processes=20, info_rate=0.01),
        ("linearizable", "mutual-exclusion"),
        {},
    ),
    Case(
        "cas-register-10k",
        "cas-register, 10,000 ops, 1 key, 5 processes, 1% info",
        lambda: register_history(seed=1, ops=10_000, processes=5, info_rate=0.01),
        ("linearizable",),
        {"model": "cas-register"},
    ),
    Case(
        "cas-register-10k-buggy",
        "cas-register, 10,000 ops, 1 key, 5 processes, 1% info, 0.05% stale reads",
        lambda: register_history(seed=4, ops=10_000, processes=5, info_rate=0.01, bug_rate=0.0005),
        ("linearizable",),
        {"model": "cas-register"},
    ),
    Case(
        "etcd-shaped-100x1k",
        "100 cas-register histories shaped like Porcupine's Jepsen etcd set: 1,000 records, "
        "5 live processes, values 0-4, 15% info, Porcupine failed-cas semantics",
        lambda: register_history(seed=7, ops=1_000, processes=5, info_rate=0.15),
        ("linearizable",),
        {"model": "cas-register", "failed_cas_observed": True},
        histories=100,
    ),
    Case(
        "locks-1m-all",
        "1,000,000 ops, 100 locks, 20 processes, 1% info: linearizable + mutual-exclusion + "
        "fencing + liveness + availability, 110 s budget per checker",
        lambda: lock_history(seed=1, ops=1_000_000, locks=100, processes=20, info_rate=0.01),
        ("linearizable", "mutual-exclusion", "fencing", "liveness", "availability"),
        {"model": "owned-mutex", "time_budget_s": 110, "ttl": 0.2, "failover": 0.5, "margin": 0.5},
        max_repeat=1,
    ),
]


def run_case(case: Case, repeat: int) -> dict[str, Any]:
    """Inside the child: build the history, check it ``repeat`` times, report."""
    started = time.monotonic()
    histories = [case.make()] if case.histories == 1 else []
    if case.histories > 1:
        histories = [
            register_history(seed=1000 + i, ops=1_000, processes=5, info_rate=0.15)
            for i in range(case.histories)
        ]
    generate_s = time.monotonic() - started
    timings = []
    cpu_timings = []
    verdict = "valid"
    per_history: list[float] = []
    details: dict[str, Any] = {}
    for _ in range(repeat):
        began = time.monotonic()
        began_cpu = time.process_time()
        per_history = []
        for history in histories:
            one = time.monotonic()
            verdict, results = run_checkers(history, case.checkers, case.options)
            per_history.append(time.monotonic() - one)
            details = {
                name: {"verdict": r.verdict, "window": r.window, "reason": r.reason}
                for name, r in results.items()
            }
        timings.append(time.monotonic() - began)
        cpu_timings.append(time.process_time() - began_cpu)
    return {
        "case": case.name,
        "ops": sum(len(h) for h in histories),
        "verdict": verdict,
        "generate_s": round(generate_s, 2),
        "check_s_median": round(statistics.median(timings), 3),
        "check_cpu_s_median": round(statistics.median(cpu_timings), 3),
        "slowest_history_s": round(max(per_history), 3) if case.histories > 1 else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "details": details,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case = next(c for c in CASES if c.name == args.child)
        print(json.dumps(run_case(case, args.repeat)))
        return 0
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.checker",
                "--child",
                case.name,
                "--repeat",
                str(min(args.repeat, case.max_repeat)),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=Path(__file__).resolve().parents[1],
        )
        row = json.loads(out.stdout)
        slowest = f", slowest {row['slowest_history_s']} s" if row["slowest_history_s"] else ""
        print(
            f"{row['case']:<26} {row['ops']:>9} records  {row['verdict']:<8} "
            f"check {row['check_s_median']:>7} s (cpu {row['check_cpu_s_median']} s){slowest}  "
            f"peak RSS {row['peak_rss_mib']} MiB"
            f"  (generate {row['generate_s']} s)  {case.description}"
        )
        for name, detail in row["details"].items():
            if detail["verdict"] != "valid":
                print(f"    {name}: {detail}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
