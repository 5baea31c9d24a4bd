"""Mutual exclusion, two ways: the lock's own history against a mutex model, and the protected
resource's view (critical sections whose accepted accesses interleave on the resource's clock).

The model check catches a service that granted a held lock; the resource check catches what that
costs, and also a client that kept using a lock it had lost (a GC pause past the TTL), which the
lock history alone cannot show. With fencing the resource refuses the stale accesses, so accepted
sections never interleave; without it they do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.checker.linearizable import check_linearizable
from bench.checker.partition import merge_results
from bench.checker.resource import Section, accesses, sections
from lockbench.checks import Anomaly, CheckResult, combine_verdicts
from lockbench.history import Call, PairedHistory, Process
from lockbench.options import CheckOptions

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


def overlapping_holds(calls: Sequence[Call]) -> int:
    """How many times two processes both believed they held one lock (the report's red bands).

    A process believes it holds a lock from its acquire's ok until it invokes the release that
    is its next op on that lock (to the end of the history if that op is not a release). Such
    overlaps are what mutual exclusion forbids, or what a lapsed lease makes possible and fencing
    must then make harmless: the count is a measurement; the verdict comes from the model and
    the resource.
    """
    held: dict[str | None, list[tuple[int, float, Process]]] = {}
    holding: dict[tuple[Process, str | None], tuple[int, Process]] = {}
    for call in calls:
        if call.invoke.f not in ("acquire", "release"):
            continue
        slot = (call.process, call.invoke.key)
        begun = holding.pop(slot, None)
        if begun is not None:  # only a release as the next op on the lock ends the hold
            until = call.invoke.time if call.invoke.f == "release" else math.inf
            held.setdefault(call.invoke.key, []).append((begun[0], until, slot[0]))
        if call.invoke.f == "acquire" and call.outcome == "ok" and call.completion is not None:
            holding[slot] = (call.completion.time, call.process)
    for (process, key), (start, _) in holding.items():
        held.setdefault(key, []).append((start, math.inf, process))
    count = 0
    for spans in held.values():
        spans.sort(key=lambda span: span[0])
        best_end, best_process = -math.inf, None
        for start, until, process in spans:
            if start < best_end and process != best_process:
                count += 1
            if until > best_end:
                best_end, best_process = until, process
    return count


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
    # valid needs a grant or a resource access that succeeded (bench/checking.py, require_evidence)
    requires = ("acquire", "res-enter", "res-read", "res-write", "res-exit")

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        model = opts.model if opts.model in LOCK_MODELS else "owned-mutex"
        has_locks = (
            any(call.invoke.f == "acquire" for call in history.calls)
            if history.whole is None
            else any(op.f == "acquire" and op.is_client for op in history.whole_sample)
        )
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
            # accepted critical sections that overlapped on the resource (anomalies)
            "overlapping_sections": len(overlaps),
            # times two clients believed they held one lock, as the report counts them
            "overlapping_holds": overlapping_holds(history.calls),
        }
        return CheckResult(
            self.name,
            verdict,
            anomalies=model_result.anomalies + resource_anomalies,
            stats=stats,
            window=model_result.window,
            reason=model_result.reason,
        )

    def merge(self, results: Sequence[CheckResult]) -> CheckResult:
        """The model and the resource are judged per lock: the groups' results combined."""
        return merge_results(self.name, results, max_anomalies=1 + MAX_REPORTED)
