"""Fencing: tokens are unique and increase with real-time grant order per lock, and the resource
never accepted a token lower than one it had already accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.checker.partition import merge_results
from bench.checker.resource import accesses
from lockbench.checks import Anomaly, CheckResult
from lockbench.history import Call, PairedHistory
from lockbench.options import CheckOptions

MAX_REPORTED = 20


def _granted_token(call: Call) -> int | None:
    if call.invoke.f != "acquire" or call.outcome != "ok" or call.completion is None:
        return None
    if isinstance(call.invoke.value, dict) and call.invoke.value.get("shared"):
        return None  # shared holders may legitimately share a token
    token = call.completion.value
    return token if isinstance(token, int) and not isinstance(token, bool) else None


def _anomaly(kind: str, explanation: str, calls: Sequence[Call]) -> Anomaly:
    indices: set[int] = set()
    for c in calls:
        indices.add(c.invoke.index)
        if c.completion is not None:
            indices.add(c.completion.index)
    return Anomaly(
        kind=kind,
        explanation=explanation,
        op_indices=tuple(sorted(indices)),
        key=calls[0].invoke.key,
        processes=tuple(dict.fromkeys(c.process for c in calls)),
        time_start=min(c.invoke.time for c in calls),
        time_end=max((c.completion.time for c in calls if c.completion), default=None),
    )


def grant_order_anomalies(calls: Sequence[Call]) -> tuple[list[Anomaly], int]:
    """Duplicate tokens, and grants whose token is not above every grant completed before them."""
    out: list[Anomaly] = []
    # Sweep in history order: at B's invocation remember the highest token completed so far; at
    # B's completion its token must be higher. Invocations are already in order (calls are);
    # completions are sorted; the two streams are merged, so only the grants in flight are held.
    grants = [(call, token) for call in calls if (token := _granted_token(call)) is not None]
    grants.sort(key=lambda grant: grant[0].invoke.index)  # already in order when paired
    completions = sorted(grants, key=lambda grant: grant[0].completion.index)  # type: ignore[union-attr]
    best: dict[str | None, tuple[int, Call]] = {}
    bound: dict[int, tuple[int, Call]] = {}
    seen: dict[str | None, dict[int, Call]] = {}
    invoked = 0
    for call, token in completions:
        completion = call.completion
        assert completion is not None
        while invoked < len(grants) and grants[invoked][0].invoke.index < completion.index:
            started = grants[invoked][0].invoke
            if started.key in best:
                bound[started.index] = best[started.key]
            invoked += 1
        key = call.invoke.key
        tokens = seen.setdefault(key, {})
        earlier = tokens.get(token)
        if earlier is not None:
            who = (
                f"process {call.process} was granted {key!r} with token {token} twice "
                f"(ops {earlier.invoke.index} and {call.invoke.index})"
                if earlier.process == call.process
                else f"processes {earlier.process} and {call.process} were both granted "
                f"{key!r} with token {token}"
            )
            out.append(
                _anomaly(
                    "duplicate-token", f"{who}; a token must identify one grant", [earlier, call]
                )
            )
        else:
            tokens[token] = call
        before = bound.pop(call.invoke.index, None)
        if before is not None and token < before[0]:
            out.append(
                _anomaly(
                    "token-order",
                    f"process {call.process} was granted {key!r} with token {token} after "
                    f"process {before[1].process}'s grant with token {before[0]} had completed; "
                    "tokens must increase in real-time grant order",
                    [before[1], call],
                )
            )
        if key not in best or token > best[key][0]:
            best[key] = (token, call)
    return out, len(grants)


def stale_acceptance_anomalies(calls: Sequence[Call]) -> tuple[list[Anomaly], int]:
    """Accesses the resource accepted with a token below one it had accepted earlier."""
    out: list[Anomaly] = []
    by_key: dict[str | None, list[Any]] = {}
    accepted = [a for a in accesses(calls) if a.accepted and a.token is not None]
    for access in accepted:
        by_key.setdefault(access.key, []).append(access)
    for key, items in by_key.items():
        items.sort(key=lambda a: a.resource_time)
        highest = None
        for access in items:
            if highest is not None and access.token < highest.token:
                out.append(
                    _anomaly(
                        "stale-token-accepted",
                        f"the resource accepted process {access.process}'s "
                        f"{access.call.invoke.f} on {key!r} with token {access.token} after "
                        f"accepting token {highest.token} from process {highest.process}",
                        [highest.call, access.call],
                    )
                )
            if highest is None or access.token > highest.token:
                highest = access
    return out, len(accepted)


class FencingChecker:
    """``fencing``: token uniqueness and order per lock, and the resource's acceptance order."""

    name = "fencing"
    # valid needs a grant or a resource access that succeeded (bench/checking.py, require_evidence)
    requires = ("acquire", "res-enter", "res-read", "res-write", "res-exit")

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        calls = history.calls
        order, grants = grant_order_anomalies(calls)
        stale, accepted = stale_acceptance_anomalies(calls)
        anomalies = order + stale
        refused = sum(
            1
            for c in calls
            if c.completion is not None
            and c.outcome == "fail"
            and c.completion.error == "stale-token"
        )
        return CheckResult(
            self.name,
            "invalid" if anomalies else "valid",
            anomalies=tuple(anomalies[:MAX_REPORTED]),
            stats={
                "grants_with_tokens": grants,
                "accepted_accesses_with_tokens": accepted,
                "refused_stale_accesses": refused,
                "anomalies": len(anomalies),
            },
        )

    def merge(self, results: Sequence[CheckResult]) -> CheckResult:
        """Tokens and the resource's acceptances are judged per lock: results combined."""
        return merge_results(self.name, results, max_anomalies=MAX_REPORTED)
