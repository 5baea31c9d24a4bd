"""Measure what each clock-faking preload does to a Python process, and what a clock read costs.

Compares no preload, the bench's wall-clock library (lockbench/lbclock.c) and, when installed,
Debian's libfaketime in the settings the bench could have used. For each it runs a Python probe
(``time.sleep``, ``threading.Event().wait``, ``asyncio.sleep``, each 0.2 s, and the wall clock's
offset) at a +100 s offset, then a C loop timing ``clock_gettime(CLOCK_REALTIME)`` and
``gettimeofday`` (median of three runs). The figures are quoted in docs/nemeses.md.

Usage: .venv/bin/python -m benchmarks.clock_preload
"""

from __future__ import annotations

import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockbench.clock_preload import OFFSET_ENV, build_library

PROBE = """
import asyncio, sys, threading, time
result = {}
started = time.monotonic()
try:
    time.sleep(0.2)
    result["time.sleep"] = f"{time.monotonic() - started:.3f} s"
except OSError as exc:
    result["time.sleep"] = repr(exc)
started = time.monotonic()
threading.Event().wait(0.2)
result["Event.wait"] = f"{time.monotonic() - started:.3f} s"
async def nap():
    started = time.monotonic()
    await asyncio.sleep(0.2)
    return time.monotonic() - started
result["asyncio.sleep"] = f"{asyncio.run(nap()):.3f} s"
result["wall offset"] = f"{time.time() - float(sys.argv[1]):+.1f} s"
print(result)
"""

COST = r"""
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
    struct timespec ts; struct timeval tv; long n = 5000000;
    double a = now(); for (long i = 0; i < n; i++) clock_gettime(CLOCK_REALTIME, &ts);
    double b = now(); for (long i = 0; i < n; i++) gettimeofday(&tv, 0);
    double c = now();
    printf("%.1f %.1f\n", (b - a) / n * 1e9, (c - b) / n * 1e9);
    return 0;
}
"""


def configurations(scratch: Path) -> dict[str, dict[str, str]]:
    offset = scratch / "offset"
    offset.write_text("+100\n")
    chosen: dict[str, dict[str, str]] = {
        "no preload": {},
        "lbclock": {"LD_PRELOAD": str(build_library()), OFFSET_ENV: str(offset)},
    }
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if found:
        base = {
            "LD_PRELOAD": found[0],
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_CACHE_DURATION": "1",
        }
        chosen["libfaketime DONT_FAKE_MONOTONIC=1"] = {**base, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        chosen["libfaketime DONT_FAKE_MONOTONIC=1 FORCE_MONOTONIC_FIX=1"] = {
            **base,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_FORCE_MONOTONIC_FIX": "1",
        }
        chosen["libfaketime (monotonic faked too)"] = {**base, "FAKETIME_DONT_FAKE_MONOTONIC": "0"}
    return chosen


def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        cost = scratch / "cost"
        (scratch / "cost.c").write_text(COST)
        subprocess.run(["gcc", "-O2", "-o", str(cost), str(scratch / "cost.c")], check=True)
        for label, extra in configurations(scratch).items():
            env = {**os.environ, **extra}
            try:
                probe = subprocess.run(
                    [sys.executable, "-c", PROBE, f"{time.time():.6f}"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                behaviour = probe.stdout.strip() or probe.stderr.strip()[-200:]
            except subprocess.TimeoutExpired:
                behaviour = "did not finish in 5 s (a wait never returned)"
            runs = [
                [
                    float(x)
                    for x in subprocess.run(
                        [str(cost)], env=env, capture_output=True, text=True, check=True
                    ).stdout.split()
                ]
                for _ in range(3)
            ]
            gettime = statistics.median(r[0] for r in runs)
            gettimeofday = statistics.median(r[1] for r in runs)
            print(f"{label}:\n  {behaviour}")
            print(f"  clock_gettime(REALTIME) {gettime:.0f} ns, gettimeofday {gettimeofday:.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
