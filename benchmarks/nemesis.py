"""Benchmark the nemesis on a netns cluster (root): fault start/stop latency, the heal sweep, and
how faithfully the userspace netem and the clock bump land.

Prints figures; medians over a few cycles (the machine is shared, so expect noise). Uses the
namespace prefix ``lbn`` and subnet 10.77.2.0/24, like the nemesis tests.

Usage: sudo .venv/bin/python -m benchmarks.nemesis [--cycles 5]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.cluster import ClusterHandle
from lockbench.clock_preload import arm_clock
from nemesis import shapes
from nemesis.clock import ClockNemesis, measure_clock_offsets
from nemesis.fault import FaultTarget
from nemesis.heal import heal_cluster
from nemesis.netem import NetemNemesis
from nemesis.partition import PartitionNemesis
from nemesis.remote import NodeLocks
from nemesis.spec import ClockOptions, NetemOptions, TargetSpec
from tests.support.netns_cluster import netns_cluster

SSH_PORT = 22
# Runs on a node: median of REPEAT TCP connects (one round trip each) to HOST:PORT, in ms.
CONNECT_MEDIAN = """
import socket, sys, time
host, port, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(repeat):
    start = time.monotonic()
    socket.create_connection((host, port), timeout=5).close()
    times.append((time.monotonic() - start) * 1000.0)
print(sorted(times)[len(times) // 2])
"""


def timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return (time.monotonic() - start) * 1000.0


def connect_ms(cluster: ClusterHandle, source: str, destination: str) -> float:
    target = cluster.node(destination).address
    script = f"python3 -c {shlex.quote(CONNECT_MEDIAN)} {target} {SSH_PORT} 9"
    return float(cluster.node(source).run(script).stdout.strip())


def cycle_figures(
    cycles: int, start: Callable[[], object], stop: Callable[[], object]
) -> dict[str, float]:
    starts, stops = [], []
    for _ in range(cycles):
        starts.append(timed(start))
        stops.append(timed(stop))
    return {"start_ms": statistics.median(starts), "stop_ms": statistics.median(stops)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, object] = {}
    with (
        tempfile.TemporaryDirectory(prefix="lbn-bench-") as tmp,
        netns_cluster(Path(tmp), prefix="lbn", subnet="10.77.2.0/24") as cluster,
    ):
        names = [n.name for n in cluster.nodes]
        for node in cluster.nodes:
            node.run("true")  # open SSH connections before timing anything
        arm_clock(cluster)  # the clock library on every node, as a run with a clock fault does
        locks = NodeLocks()

        partition = PartitionNemesis(cluster, "lockbench-bench", locks)
        ring = FaultTarget(grudge=shapes.majorities_ring(names, random.Random(1)))
        figures["partition majorities-ring"] = cycle_figures(
            args.cycles,
            lambda: partition.invoke("start-partition", ring),
            lambda: partition.invoke("stop-partition", None),
        )

        bump = ClockOptions(mode="bump", target=TargetSpec("all"), offset_ms=250.0)
        clock = ClockNemesis(cluster, bump, 0, locks, {})
        everyone = FaultTarget(nodes=tuple(names))
        figures["clock bump, all nodes"] = cycle_figures(
            args.cycles,
            lambda: clock.invoke("start-clock", everyone),
            lambda: clock.invoke("stop-clock", None),
        )
        clock.invoke("start-clock", everyone)
        reading = measure_clock_offsets(cluster)
        clock.invoke("stop-clock", None)
        figures["clock bump 250 ms, measured"] = {
            "median_offset_ms": round(statistics.median(reading.offsets_ms.values()), 1),
            "median_system_offset_ms": round(
                statistics.median(reading.system_offsets_ms.values()), 1
            ),
            "median_uncertainty_ms": round(statistics.median(reading.uncertainty_ms.values()), 1),
        }

        netem_options = NetemOptions(target=TargetSpec("nodes", None, ("n1",)), delay_ms=50.0)
        netem = NetemNemesis(cluster, netem_options, 0, locks, random.Random(2))
        one = FaultTarget(nodes=("n1",), hold_seconds=60)
        figures["netem on one node"] = cycle_figures(
            args.cycles,
            lambda: netem.invoke("start-netem", one),
            lambda: netem.invoke("stop-netem", None),
        )
        baseline = connect_ms(cluster, "n2", "n1")
        accuracy: dict[str, float] = {"baseline_rtt_ms": round(baseline, 2)}
        for delay in (20.0, 50.0, 100.0):
            options = NetemOptions(target=TargetSpec("nodes", None, ("n1",)), delay_ms=delay)
            shaper = NetemNemesis(cluster, options, 1, locks, random.Random(3))
            shaper.invoke("start-netem", one)
            try:
                accuracy[f"delay {delay:g} ms: added rtt_ms"] = round(
                    connect_ms(cluster, "n2", "n1") - baseline, 2
                )
            finally:
                shaper.invoke("stop-netem", None)
        figures["netem accuracy (n2 -> n1 TCP connect, median of 9)"] = accuracy

        heals = [timed(lambda: heal_cluster(cluster)) for _ in range(args.cycles)]
        figures["heal_cluster sweep, clean 5-node cluster"] = {
            "median_ms": round(statistics.median(heals), 1)
        }
        leftovers = heal_cluster(cluster)
    print(json.dumps(figures, indent=2, default=lambda x: round(x, 1)))
    return 0 if not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
