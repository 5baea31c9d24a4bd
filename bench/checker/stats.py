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
from lockbench.history import Op, PairedHistory
from lockbench.options import CheckOptions

NAME = "stats"
# Records a client writes about itself, not operations the service served.
OWN_OBSERVATIONS = frozenset({LEASE_LOST})
# What the resource checkers read: a grant, or an access to the protected resource.
RESOURCE_ACCESSES = ("res-enter", "res-read", "res-write", "res-exit")


def kind_counts(history: Sequence[Op]) -> dict[str, dict[str, int]]:
    """Per op kind: how many were invoked and how many ended ok, fail, info or never."""
    counts: dict[str, Counter[str]] = {}
    for op in history:
        if not op.is_client or op.f in OWN_OBSERVATIONS:
            continue
        counts.setdefault(op.f, Counter())[op.type] += 1
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
        counts = kind_counts(history.ops)
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
