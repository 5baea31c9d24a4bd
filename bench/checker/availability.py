"""Availability and failover: throughput and success fraction in each fault window, and the
longest stretch without a successful op after each kill or partition (the failover time).

These are measurements; the verdict is invalid only if ``max_gap`` (seconds) is set and a gap
after a fault exceeds it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.checker.operations import LEASE_LOST
from bench.checker.partition import SpilledInts
from lockbench.checks import Anomaly, CheckResult
from lockbench.history import NEMESIS, Op, PairedHistory, WholeHistory
from lockbench.options import CheckOptions

NS = 1_000_000_000
FAILOVER_FAULTS = frozenset({"kill", "partition"})


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """From the nemesis record that started a fault to the one that stopped it (or the end)."""

    fault: str
    start: Op
    stop: Op | None
    end_time: int


def fault_windows(history: Sequence[Op], end_time: int | None = None) -> list[FaultWindow]:
    """Pair ``start-<fault>`` and ``stop-<fault>`` nemesis completions in order (a fault still
    on runs to ``end_time``, by default the last record's time)."""
    open_faults: dict[str, list[Op]] = {}
    windows: list[FaultWindow] = []
    if end_time is None:
        end_time = history[-1].time if history else 0
    for op in history:
        if op.process != NEMESIS or op.type != "info":
            continue
        if op.f.startswith("start-"):
            open_faults.setdefault(op.f[6:], []).append(op)
        elif op.f.startswith("stop-"):
            fault = op.f[5:]
            for start in open_faults.pop(fault, []):
                windows.append(FaultWindow(fault, start, op, op.time))
    for fault, starts in open_faults.items():
        windows.extend(FaultWindow(fault, start, None, end_time) for start in starts)
    windows.sort(key=lambda w: w.start.index)
    return windows


def _window_stats(
    times: Sequence[int], ok_times: Sequence[int], lo: int, hi: int
) -> dict[str, Any]:
    """Completions and ok completions in [lo, hi], counted by bisection (completion times
    are in history order, which is time order)."""
    inside = bisect.bisect_right(times, hi) - bisect.bisect_left(times, lo)
    ok = bisect.bisect_right(ok_times, hi) - bisect.bisect_left(ok_times, lo)
    seconds = max(hi - lo, 1) / NS
    return {
        "ops": inside,
        "ok": ok,
        "ops_per_s": round(inside / seconds, 3),
        "success_fraction": round(ok / inside, 4) if inside else None,
    }


def longest_gap(ok_times: Sequence[int], lo: int, hi: int) -> tuple[int, int]:
    """The longest interval in [lo, hi] with no successful completion: (length, start)."""
    first = bisect.bisect_left(ok_times, lo)
    last = bisect.bisect_right(ok_times, hi)
    best, best_start, previous = 0, lo, lo
    for t in (*ok_times[first:last], hi):
        if t - previous > best:
            best, best_start = t - previous, previous
        previous = t
    return best, best_start


class AvailabilityChecker:
    """``availability``: per-window figures; ``max_gap`` turns long failovers into anomalies."""

    name = "availability"
    # valid needs any client op that succeeded (bench/checking.py, require_evidence)
    requires = ()

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        accumulator = self.accumulate(opts)
        accumulator.add(history.ops)
        return accumulator.judge(history.end_time)

    def accumulate(self, opts: CheckOptions) -> AvailabilityAccumulator:
        """The same check, fed a record at a time (completion times spilled to disk)."""
        return AvailabilityAccumulator(opts)


class AvailabilityAccumulator:
    """What availability keeps of a history: completion times (8 bytes each, on disk past a
    million: bench.checker.partition.SpilledInts) and the nemesis records."""

    name = "availability"

    def __init__(self, opts: CheckOptions) -> None:
        self.opts = opts
        self.times = SpilledInts()
        self.ok_times = SpilledInts()
        self.nemesis: list[Op] = []

    def add(self, ops: Sequence[Op]) -> None:
        # is_client inlined (millions of records); lease-lost is the client's own observation,
        # not an op the service served
        completions = [
            op
            for op in ops
            if type(op.process) is int and op.type != "invoke" and op.f != LEASE_LOST
        ]
        self.times.extend(op.time for op in completions)
        self.ok_times.extend(op.time for op in completions if op.type == "ok")
        self.nemesis.extend(op for op in ops if op.process == NEMESIS)

    def result(self, whole: WholeHistory) -> CheckResult:
        return self.judge(whole.end_time)

    def judge(self, end_time: int) -> CheckResult:
        opts = self.opts
        times = self.times.values()
        ok_times = self.ok_times.values()
        windows = fault_windows(self.nemesis, end_time)
        rows: list[dict[str, Any]] = []
        anomalies: list[Anomaly] = []
        for w in windows:
            row: dict[str, Any] = {
                "fault": w.fault,
                "start_index": w.start.index,
                "stop_index": None if w.stop is None else w.stop.index,
                "seconds": round((w.end_time - w.start.time) / NS, 3),
                **_window_stats(times, ok_times, w.start.time, w.end_time),
            }
            if w.fault in FAILOVER_FAULTS:
                gap, gap_start = longest_gap(ok_times, w.start.time, w.end_time)
                after = bisect.bisect_left(ok_times, w.start.time)
                row["longest_gap_s"] = round(gap / NS, 3)
                row["first_success_after_s"] = (
                    round((ok_times[after] - w.start.time) / NS, 3)
                    if after < len(ok_times)
                    else None
                )
                if opts.max_gap is not None and gap > opts.max_gap * NS:
                    anomalies.append(
                        Anomaly(
                            kind="unavailable",
                            explanation=(
                                f"no client op succeeded for {gap / NS:.3f} s during the "
                                f"{w.fault} started at op {w.start.index}, longer than the "
                                f"allowed {opts.max_gap:g} s"
                            ),
                            op_indices=(w.start.index,),
                            time_start=gap_start,
                            time_end=gap_start + gap,
                        )
                    )
            rows.append(row)
        stats: dict[str, Any] = {
            "overall": _window_stats(times, ok_times, 0, end_time),
            "windows": rows,
        }
        return CheckResult(
            self.name, "invalid" if anomalies else "valid", anomalies=tuple(anomalies), stats=stats
        )
