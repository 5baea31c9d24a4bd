"""The checker contract: what a checker receives and what it returns (its verdict, anomalies and
stats), and how verdicts compose.

Its own module (``lockbench.protocols`` re-exports every name) so the history pipeline and the
checkers load only this part of the contract: ``lockbench check`` on a small history is mostly
start-up, and the rest of the protocols' classes cost it milliseconds (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from lockbench.history import Op, PairedHistory, WholeHistory
from lockbench.options import CheckOptions

Verdict: TypeAlias = Literal["valid", "invalid", "unknown"]
VERDICT_RANK: Mapping[str, int] = {"valid": 0, "unknown": 1, "invalid": 2}


def combine_verdicts(verdicts: Sequence[Verdict]) -> Verdict:
    """Jepsen's composition: invalid beats unknown beats valid. No verdicts at all is unknown:
    nothing was checked, so nothing was earned."""
    if not verdicts:
        return "unknown"
    worst: Verdict = "valid"
    for v in verdicts:
        if VERDICT_RANK[v] > VERDICT_RANK[worst]:
            worst = v
    return worst


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One thing that went wrong, with the ops that show it and a sentence that explains it."""

    kind: str
    explanation: str
    op_indices: tuple[int, ...] = ()
    key: str | None = None
    processes: tuple[int | str, ...] = ()
    time_start: int | None = None
    time_end: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "explanation": self.explanation,
            "op_indices": list(self.op_indices),
            "key": self.key,
            "processes": list(self.processes),
            "time_start": self.time_start,
            "time_end": self.time_end,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A checker's verdict. ``window`` is the op-index range of a counterexample, if any."""

    checker: str
    verdict: Verdict
    anomalies: tuple[Anomaly, ...] = ()
    stats: Mapping[str, Any] = field(default_factory=dict)
    window: tuple[int, int] | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "verdict": self.verdict,
            "anomalies": [a.to_json() for a in self.anomalies],
            "stats": dict(self.stats),
            "window": list(self.window) if self.window else None,
            "reason": self.reason,
        }


class Checker(Protocol):
    """Reads only the history, so it can run later, elsewhere, on histories from other tools.

    The history arrives read and paired once (``PairedHistory``) and the options parsed once
    (``CheckOptions``); the same call serves ``lockbench run`` and ``lockbench check``.
    Optionally a checker declares ``requires``: op kinds at least one of which must have
    succeeded for its ``valid`` to mean anything; otherwise the pipeline makes it ``unknown``
    (valid is earned, docs/checkers.md)."""

    name: str

    def check(self, history: PairedHistory, options: CheckOptions) -> CheckResult: ...


@runtime_checkable
class KeyedChecker(Checker, Protocol):
    """A checker whose result on a history is made of its results on groups of the history's
    keys, so a history too large for memory can be checked a group at a time
    (bench/checker/partition.py, docs/checkers.md "Histories larger than memory").

    Each group is a ``PairedHistory`` of the client calls on some keys, with ``whole`` set (what
    the group needs to know about the rest); ``merge`` turns the groups' results, in group order,
    into the result for the whole history, with the verdict the whole history would get."""

    def merge(self, results: Sequence[CheckResult]) -> CheckResult: ...


class HistoryAccumulator(Protocol):
    """Takes a history's records a batch at a time, in history order, keeping what a result
    needs in memory bounded by something other than the history's length (or on disk)."""

    def add(self, ops: Sequence[Op]) -> None: ...

    def result(self, whole: WholeHistory) -> CheckResult: ...


@runtime_checkable
class StreamingChecker(Checker, Protocol):
    """A checker that can also read a history as a stream of records (the same result as
    ``check``), for histories too large for memory."""

    def accumulate(self, options: CheckOptions) -> HistoryAccumulator: ...
