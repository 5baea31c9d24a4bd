"""Fault reach: a run is not valid on the strength of a clock fault that never reached a server.

The nemesis checks after every clock action whether the offset reached each server
(nemesis/clock_check.py) and records the nodes it did not reach as ``not_reached`` in its
``f: "clock"`` observation. The history pipeline (bench/checking.py) adds this checker to any
history with clock observations. A run whose history has such a record is ``unknown``, never
``valid``: the other checkers saw a test with less fault than it claims. It cannot make a run
``invalid``: what the servers did is the other checkers' business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lockbench.checks import Anomaly, CheckResult
from lockbench.history import NEMESIS, Op, PairedHistory, WholeHistory
from lockbench.options import CheckOptions

NAME = "fault-reach"


def unreached_clock_records(history: Sequence[Op]) -> list[Op]:
    return [
        op
        for op in history
        if op.process == NEMESIS
        and op.f == "clock"
        and isinstance(op.value, Mapping)
        and op.value.get("not_reached")
    ]


def _explain(op: Op) -> str:
    value = op.value
    reach = value.get("reach", {}) if isinstance(value, Mapping) else {}
    parts = []
    for node in value.get("not_reached", []):
        entry = reach.get(node, {}) if isinstance(reach, Mapping) else {}
        seen = entry.get("seen_ms")
        expected = entry.get("expected_ms")
        if seen is not None and expected is not None:
            parts.append(
                f"{node} (its server saw {seen:+.0f} ms, the offset was {expected:+.0f} ms)"
            )
        else:
            parts.append(f"{node} ({entry.get('detail', 'not reached')})")
    return "the clock fault did not reach the server on " + ", ".join(parts)


class FaultReachChecker:
    """Implements bench.protocols.Checker: unknown when a clock fault missed a server."""

    name = NAME

    def accumulate(self, options: CheckOptions) -> ClockRecords:
        return ClockRecords(self, options)

    def check(self, history: PairedHistory, options: CheckOptions) -> CheckResult:
        missed = unreached_clock_records(history.ops)
        checked = sum(1 for op in history.ops if op.process == NEMESIS and op.f == "clock")
        stats = {"clock_checks": checked, "not_reached": len(missed)}
        if not missed:
            return CheckResult(NAME, "valid", stats=stats)
        anomalies = tuple(
            Anomaly(
                "clock-fault-not-reached", _explain(op), op_indices=(op.index,), time_start=op.time
            )
            for op in missed
        )
        reason = anomalies[0].explanation + (
            f" (and {len(missed) - 1} more check(s))" if len(missed) > 1 else ""
        )
        return CheckResult(NAME, "unknown", anomalies, stats, reason=reason)


class ClockRecords:
    """What fault reach reads of a history streamed a record at a time: the clock records."""

    def __init__(self, checker: FaultReachChecker, options: CheckOptions) -> None:
        self.checker = checker
        self.options = options
        self.ops: list[Op] = []

    def add(self, ops: Sequence[Op]) -> None:
        self.ops.extend(op for op in ops if op.process == NEMESIS and op.f == "clock")

    def result(self, whole: WholeHistory) -> CheckResult:
        return self.checker.check(PairedHistory(self.ops, [], whole=whole), self.options)
