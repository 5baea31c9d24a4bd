"""Benchmark the netns runtime: up + deploy, redeploy unchanged, lockd start + election, down.

Targets (issue 5): up + deploy of the reference server to five nodes <= 15 s, redeploy of an
unchanged version <= 5 s, down <= 5 s. Needs root. Uses this task's names (prefix ``lbc``,
subnet 10.77.1.0/24). Usage: ``sudo .venv/bin/python -m benchmarks.cluster [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.backends.reference import ReferenceBackend
from bench.cluster import open_cluster
from bench.cluster.netns import netns_down, netns_up
from lockbench.deploy import Wheel, build_wheel
from lockbench.parallel import on_each_node

T = TypeVar("T")
LEADER_TIMEOUT_S = 60.0


def timed(samples: dict[str, list[float]], name: str, action: Callable[[], T]) -> T:
    started = time.monotonic()
    result = action()
    samples.setdefault(name, []).append(time.monotonic() - started)
    return result


def one_run(
    work: Path, samples: dict[str, list[float]], prefix: str, subnet: str, wheel: Wheel
) -> None:
    cluster_dir = work / "cluster"
    backend = ReferenceBackend(wheel=wheel)
    started = time.monotonic()
    try:
        inventory = timed(
            samples, "netns up", lambda: netns_up(cluster_dir, prefix=prefix, subnet=subnet)
        )
        with open_cluster(inventory) as cluster:
            timed(samples, "deploy (fresh nodes)", lambda: backend.deploy(cluster))
            samples.setdefault("up + deploy", []).append(time.monotonic() - started)
            timed(samples, "redeploy unchanged", lambda: backend.deploy(cluster))

            def start_and_elect() -> None:
                on_each_node("start", cluster.nodes, backend.start)
                deadline = time.monotonic() + LEADER_TIMEOUT_S
                while backend.leader(cluster) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("no leader elected")
                    time.sleep(0.05)

            timed(samples, "start lockd x5 + leader", start_and_elect)
    finally:
        timed(samples, "down (5 lockd running)", lambda: netns_down(cluster_dir))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix", default="lbc")
    parser.add_argument("--subnet", default="10.77.1.0/24")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_cluster: needs root (network namespaces)", file=sys.stderr)
        return 2
    samples: dict[str, list[float]] = {}
    # The build environment is made once per machine; a changed tree costs one wheel build.
    first = build_wheel()
    shutil.rmtree(first.path.parent)
    timed(samples, "wheel build (changed tree)", build_wheel)
    wheel = timed(samples, "wheel lookup (unchanged)", build_wheel)
    # one wheel for all runs: they measure deployment, not the build
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lockbench-bench-") as work:
            one_run(Path(work), samples, args.prefix, args.subnet, wheel)
    load = os.getloadavg()[0]
    print(f"bench_cluster: {args.runs} run(s), load average {load:.1f} on {os.cpu_count()} cores")
    for name, values in samples.items():
        print(
            f"  {name:28} median {statistics.median(values):6.2f} s   "
            f"min {min(values):6.2f}   max {max(values):6.2f}   (n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
