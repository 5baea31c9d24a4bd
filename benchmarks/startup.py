"""Benchmark the CLI's start-up: ``lockbench --help`` and ``lockbench check`` on a two-op history.

Each command runs from a cold interpreter ``--runs`` times, the commands interleaved so a change in
the machine's load hits all of them alike; prints the median (and min) wall and CPU time of each.
The targets (issue 14) are medians of 10: ``--help`` <= 0.1 s, ``check`` <= 0.15 s. Usage:

    python -m benchmarks.startup                   # the venv's lockbench, 10 runs
    python -m benchmarks.startup --runs 20 --lockbench A/.venv/bin/lockbench --lockbench B/...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# One acquire invoke and its ok: the smallest history every default checker has something to read.
TWO_OPS = (
    {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "acquire", "key": "a"},
    {"index": 1, "time": 5, "process": 0, "type": "ok", "f": "acquire", "key": "a", "value": 1},
)


@dataclass
class Timings:
    """One command's wall and CPU seconds, one entry per run."""

    command: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{' '.join(self.command)}: wall median {statistics.median(self.wall):.3f} s "
            f"(min {min(self.wall):.3f}), CPU median {statistics.median(self.cpu):.3f} s "
            f"(min {min(self.cpu):.3f}), {len(self.wall)} runs"
        )


def run_once(timings: Timings, cwd: Path, env: dict[str, str]) -> None:
    """Run the command once, adding its wall time and its (child) CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        timings.command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    timings.wall.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings.cpu.append(
        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument(
        "--lockbench",
        action="append",
        help="a lockbench script to time; repeat it to set checkouts side by side in one run "
        "(default: this interpreter's venv)",
    )
    args = parser.parse_args()
    scripts = [
        os.path.abspath(s) for s in args.lockbench or [Path(sys.executable).parent / "lockbench"]
    ]
    python = str(Path(scripts[0]).parent / "python")
    # Bytecode is written and then read, as an installed wheel has it compiled: a
    # PYTHONDONTWRITEBYTECODE in the caller's environment would time the compiler instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="lockbench-startup-") as tmp:
        cwd = Path(tmp)
        (cwd / "two.jsonl").write_text("".join(json.dumps(op) + "\n" for op in TWO_OPS))
        commands = [Timings([python, "-c", "pass"])]
        for script in scripts:
            commands += [Timings([script, "--help"]), Timings([script, "check", "two.jsonl"])]
        for timings in commands:  # one unmeasured run each: bytecode written, files cached
            subprocess.run(
                timings.command, cwd=cwd, env=env, capture_output=True, check=True, timeout=60
            )
        for _ in range(args.runs):
            for timings in commands:
                run_once(timings, cwd, env)
    for timings in commands:
        print(timings.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
