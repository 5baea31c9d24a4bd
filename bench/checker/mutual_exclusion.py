"""Mutual exclusion, two ways: the lock's own history against a mutex model, and the protected
resource's view (critical sections whose accepted accesses interleave on the resource's clock).

The model check catches a service that granted a held lock; the resource check catches what that
costs, and also a client that kept using a lock it had lost (a GC pause past the TTL), which the
lock history alone cannot show. With fencing the resource refuses the stale accesses, so accepted
sections never interleave; without it they do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.checker.linearizable import check_linearizable
from bench.checker.resource import Section, accesses, sections
from lockbench.history import PairedHistory
from lockbench.options import CheckOptions
from lockbench.protocols import Anomaly, CheckResult, combine_verdicts

MAX_REPORTED = 20
LOCK_MODELS = ("mutex", "owned-mutex")


def overlapping_sections(all_sections: Sequence[Section]) -> list[tuple[Section, Section]]:
    """Pairs of sections of different processes on one key whose resource-time spans overlap."""
    by_key: dict[str | None, list[Section]] = {}
    for section in all_sections:
        by_key.setdefault(section.key, []).append(section)
    pairs: list[tuple[Section, Section]] = []
    for key_sections in by_key.values():
        key_sections.sort(key=lambda s: (s.start, s.end))
        latest: Section | None = None  # the section reaching furthest so far
        for section in key_sections:
            overlaps = latest is not None and section.start < latest.end
            if overlaps and latest is not None and section.process != latest.process:
                pairs.append((latest, section))
            if latest is None or section.end > latest.end:
                latest = section
    return pairs


def _overlap_anomaly(first: Section, second: Section) -> Anomaly:
    ops = [a.call for a in (*first.accesses, *second.accesses)]
    indices = sorted({c.invoke.index for c in ops} | {a.index for a in first.accesses})
    return Anomaly(
        kind="overlapping-critical-sections",
        explanation=(
            f"processes {first.process} and {second.process} were both inside the critical "
            f"section of {first.key!r} on the resource's clock ({first.start}-{first.end} ns and "
            f"{second.start}-{second.end} ns), so the lock did not exclude them"
        ),
        op_indices=tuple(indices),
        key=first.key,
        processes=(first.process, second.process),
        time_start=min(c.invoke.time for c in ops),
        time_end=max(c.completion.time for c in ops if c.completion is not None),
    )


class MutualExclusionChecker:
    """``mutual-exclusion``: owned-mutex model (or ``model: mutex``) plus resource overlap."""

    name = "mutual-exclusion"

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        model = opts.model if opts.model in LOCK_MODELS else "owned-mutex"
        has_locks = any(call.invoke.f == "acquire" for call in history.calls)
        model_result = (
            check_linearizable(history, opts, checker=self.name, model_name=model)
            if has_locks
            else CheckResult(self.name, "valid")
        )
        all_sections = sections(accesses(history.calls))
        overlaps = overlapping_sections(all_sections)
        resource_anomalies = tuple(_overlap_anomaly(a, b) for a, b in overlaps[:MAX_REPORTED])
        verdict = combine_verdicts(
            [model_result.verdict, "invalid" if resource_anomalies else "valid"]
        )
        stats: dict[str, Any] = {
            "model": dict(model_result.stats),
            "critical_sections": len(all_sections),
            "overlapping_pairs": len(overlaps),
        }
        return CheckResult(
            self.name,
            verdict,
            anomalies=model_result.anomalies + resource_anomalies,
            stats=stats,
            window=model_result.window,
            reason=model_result.reason,
        )
