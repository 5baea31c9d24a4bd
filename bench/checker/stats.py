"""``stats``: valid must be earned (after Jepsen's ``checker/stats``).

A run in which some kind of operation never succeeded proved nothing about that kind (a service
that answered nothing is not "valid"), and a history with no client operation proved nothing at
all: both are ``unknown`` with the reason. The checking pipeline (bench/checking.py) runs
``stats`` on every history whatever checkers were named, and turns another checker's ``valid``
into ``unknown`` when none of the op kinds it declares in ``requires`` ever succeeded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from bench.checker.operations import LEASE_LOST
from lockbench.checks import CheckResult
from lockbench.history import Op, PairedHistory, WholeHistory
from lockbench.options import CheckOptions

NAME = "stats"
# Records a client writes about itself, not operations the service served.
OWN_OBSERVATIONS = frozenset({LEASE_LOST})
# What the resource checkers read: a grant, or an access to the protected resource.
RESOURCE_ACCESSES = ("res-enter", "res-read", "res-write", "res-exit")


def kind_counts(history: Sequence[Op]) -> dict[str, dict[str, int]]:
    """Per op kind: how many were invoked and how many ended ok, fail, info or never."""
    counter = KindCounter()
    counter.add(history)
    return counter.counts()


class KindCounter:
    """Counts per op kind and record type, a record at a time (``StatsChecker.accumulate``)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()  # (op kind, record type)

    def add(self, ops: Sequence[Op]) -> None:
        # is_client inlined: this runs over every record of a long history
        self._counts.update(
            (op.f, op.type)
            for op in ops
            if type(op.process) is int and op.f not in OWN_OBSERVATIONS
        )

    def result(self, whole: WholeHistory) -> CheckResult:
        return judge(self.counts())

    def counts(self) -> dict[str, dict[str, int]]:
        by_kind: dict[str, Counter[str]] = {}
        for (f, typ), count in self._counts.items():
            by_kind.setdefault(f, Counter())[typ] += count
        return _summarise(by_kind)


def _summarise(counts: Mapping[str, Counter[str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for f, c in sorted(counts.items()):
        ended = c["ok"] + c["fail"] + c["info"]
        out[f] = {
            "invoked": c["invoke"],
            "ok": c["ok"],
            "fail": c["fail"],
            "info": c["info"],
            "pending": max(0, c["invoke"] - ended),
        }
    return out


def _describe(f: str, c: Mapping[str, int]) -> str:
    parts = [f"{c[k]} {k}" for k in ("fail", "info", "pending") if c[k]]
    return f"{f} ({c['invoked']} invoked: {', '.join(parts) or 'none completed'})"


class StatsChecker:
    """``stats``: counts per op kind; unknown when nothing ran or some kind never succeeded."""

    name = NAME

    def check(self, history: PairedHistory, options: CheckOptions) -> CheckResult:
        return judge(kind_counts(history.ops))

    def accumulate(self, options: CheckOptions) -> KindCounter:
        return KindCounter()


def judge(counts: dict[str, dict[str, int]]) -> CheckResult:
    """Unknown when nothing ran or some op kind never succeeded."""
    ok = sum(c["ok"] for c in counts.values())
    stats = {"ops": counts, "ok": ok, "invoked": sum(c["invoked"] for c in counts.values())}
    if not counts:
        reason = "the history has no client operations: nothing was checked"
        return CheckResult(NAME, "unknown", stats=stats, reason=reason)
    never = [_describe(f, c) for f, c in counts.items() if c["ok"] == 0]
    if never:
        reason = "no operation of kind " + "; ".join(never) + " ever succeeded"
        return CheckResult(NAME, "unknown", stats=stats, reason=reason)
    return CheckResult(NAME, "valid", stats=stats)
