"""Liveness: after a holder dies or stalls, a waiter gets the lock within TTL + failover + margin.

A holder "dies" when its process is retired (an ``info`` op while it held or may have held the
lock) and "stalls" when it invokes ``stall`` while holding. From that moment the service may keep
the lock for one session TTL, plus the time a failover takes, plus a stated margin; a waiter still
waiting after that deadline, with no grant to anyone else in between, is a liveness failure.
A live process that held the lock at that moment (granted before, not yet released) owes it back
only when it releases: the allowance then runs from its release, not from the loss. (A lock
held for longer than the allowance would otherwise blame every waiter's wait behind a healthy
holder on whichever queued process happened to die first.)

The allowance does not run while the bench's own faults hold a majority of the nodes down (a
kill, pause or power loss of more than half the cluster, from the record that started it to the
one that says it was stopped): without a quorum no lock service can grant, by the test's design,
and the time such a fault and the restart after it take is the fault's, not a failover's. A
fault record says how large the cluster is (``cluster_size``, docs/history.md); without it no
outage is assumed.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lockbench.checks import Anomaly, CheckResult
from lockbench.history import NEMESIS, Call, Op, PairedHistory, Process
from lockbench.options import CheckOptions

NS = 1_000_000_000
MAX_REPORTED = 20
# faults that take their nodes out of the service while on (partitions leave them running)
DOWN_FAULTS = frozenset({"kill", "pause", "power-loss"})


@dataclass(frozen=True, slots=True)
class HolderLoss:
    """The moment a holder stopped being able to release: its death or its stall."""

    key: str | None
    process: Process
    cause: str  # "crashed" or "stalled"
    time: int
    op: Call


def holder_losses(calls: Sequence[Call]) -> list[HolderLoss]:
    """Stalls and crashes of processes that held (or may have held) a lock at that moment."""
    holding: dict[Process, dict[str | None, Call]] = {}
    out: list[HolderLoss] = []
    events: list[tuple[int, Call]] = []
    for call in calls:
        events.append((call.invoke.index, call))
        if call.completion is not None:
            events.append((call.completion.index, call))
    events.sort(key=lambda e: e[0])
    for index, call in events:
        p = call.process
        f = call.invoke.f
        at_completion = call.completion is not None and index == call.completion.index
        if not at_completion:
            if f == "stall":
                for key in holding.get(p, {}):
                    out.append(HolderLoss(key, p, "stalled", call.invoke.time, call))
            continue
        assert call.completion is not None
        if f == "acquire" and call.outcome in ("ok", "info"):
            holding.setdefault(p, {})[call.invoke.key] = call
        elif f == "release" and call.outcome == "ok":
            holding.get(p, {}).pop(call.invoke.key, None)
        if call.outcome == "info":
            for key in holding.pop(p, {}):
                out.append(HolderLoss(key, p, "crashed", call.completion.time, call))
    return out


@dataclass(frozen=True, slots=True)
class Hold:
    """A grant and the moment its holder gave the lock up (None: still holding at the end)."""

    process: Process
    start: int
    end: int | None


def holds(calls: Sequence[Call]) -> dict[str | None, list[Hold]]:
    """Every ``ok`` grant per key, ended by its holder's release, ``lease-lost`` or crash."""
    events: list[tuple[int, int, Call]] = []
    for call in calls:
        events.append((call.invoke.index, call.invoke.time, call))
        if call.completion is not None:
            events.append((call.completion.index, call.completion.time, call))
    events.sort(key=lambda e: e[0])
    open_holds: dict[tuple[Process, str | None], int] = {}
    out: dict[str | None, list[Hold]] = {}

    def end(process: Process, key: str | None, time: int) -> None:
        start = open_holds.pop((process, key), None)
        if start is not None:
            out.setdefault(key, []).append(Hold(process, start, time))

    for index, time, call in events:
        p, f, key = call.process, call.invoke.f, call.invoke.key
        at_completion = call.completion is not None and index == call.completion.index
        if not at_completion:
            if f in ("release", "lease-lost"):
                end(p, key, time)
            continue
        if f == "acquire" and call.outcome == "ok":
            open_holds[(p, key)] = time
        elif call.outcome == "info":
            for process, held_key in [k for k in open_holds if k[0] == p]:
                end(process, held_key, time)
    for (process, key), start in open_holds.items():
        out.setdefault(key, []).append(Hold(process, start, None))
    return out


class KeyHolds:
    """One key's holds by start time, with prefix maxima of their ends, so the latest end among
    the holds begun by a moment, by processes other than a given one, is one bisection away
    (a loop over every hold per loss would be quadratic in long histories).

    ``best[i]``: the latest end among holds ``0..i`` and its process; ``runner_up[i]``: the
    latest end among those holds by any other process. An open hold ends at infinity.
    """

    def __init__(self, key_holds: Sequence[Hold]) -> None:
        ordered = sorted(key_holds, key=lambda h: h.start)
        self.starts = [h.start for h in ordered]
        self.best: list[tuple[float, Process]] = []
        self.runner_up: list[float] = []
        best_end, best_process, runner_up = -math.inf, None, -math.inf
        for hold in ordered:
            end = math.inf if hold.end is None else float(hold.end)
            if hold.process == best_process:
                best_end = max(best_end, end)
            elif end > best_end:
                runner_up = best_end  # the old best is another process than this hold's
                best_end, best_process = end, hold.process
            else:
                runner_up = max(runner_up, end)
            self.best.append((best_end, hold.process if best_process is None else best_process))
            self.runner_up.append(runner_up)

    def held_by_others_until(self, loss: HolderLoss) -> int | None:
        """When the last other process holding the lock at the loss gave it up (-1: none held
        it; None: one held it to the end of the history)."""
        i = bisect.bisect_right(self.starts, loss.time) - 1
        if i < 0:
            return -1
        best_end, best_process = self.best[i]
        end = best_end if best_process != loss.process else self.runner_up[i]
        if end == math.inf:
            return None
        return int(end) if end > loss.time else -1


def quorum_outages(ops: Sequence[Op]) -> list[tuple[int, int]]:
    """The (start, end) times in which the bench's kill, pause and power-loss faults together held
    more than half of the nodes down: from the invoke that started each fault (it may take effect
    any time after) to the record that it was stopped, or the end of the history. Only faults
    whose start record gives ``cluster_size`` count; a start the nemesis skipped never began.
    (Not availability.fault_windows: it starts a window at the start's ``info``, which a power
    loss writes only when the loss is over.)"""
    changes, size = _down_changes(ops)
    down: dict[Any, tuple[str, ...]] = {}  # nemesis index -> its nodes, while on
    outages: list[tuple[int, int]] = []
    began: int | None = None
    for time, index, nodes in changes:
        if nodes is None:
            down.pop(index, None)
        else:
            down[index] = nodes
        majority_down = 2 * len({node for on in down.values() for node in on}) > size
        if majority_down and began is None:
            began = time
        elif not majority_down and began is not None:
            outages.append((began, time))
            began = None
    if began is not None:
        outages.append((began, ops[-1].time))
    return outages


DownChange = tuple[int, Any, tuple[str, ...] | None]  # time, nemesis index, its nodes (None: off)


def _down_changes(ops: Sequence[Op]) -> tuple[list[DownChange], int]:
    """Each start and stop of a node-down fault that says its cluster's size (skipped starts
    left out), and that size."""
    changes: list[DownChange | None] = []
    started: dict[Any, int] = {}  # nemesis index -> its start's place in ``changes``
    size = 0
    for op in ops:
        value = op.value
        if op.process != NEMESIS or not isinstance(value, Mapping) or "nemesis" not in value:
            continue
        phase, _, fault = op.f.partition("-")
        if fault not in DOWN_FAULTS:
            continue
        index = value["nemesis"]
        cluster_size = value.get("cluster_size")
        if (
            phase == "start"
            and op.type == "invoke"
            and isinstance(cluster_size, int)
            and cluster_size > 0
        ):
            size = max(size, cluster_size)
            started[index] = len(changes)
            changes.append((op.time, index, tuple(value.get("nodes") or ())))
        elif phase == "start" and "skipped" in value and index in started:
            changes[started.pop(index)] = None  # it never began
        elif phase == "stop" and op.type == "info":
            started.pop(index, None)
            changes.append((op.time, index, None))
    return [change for change in changes if change is not None], size


def deadline_outside(start: int, allowance: int, outages: Sequence[tuple[int, int]]) -> int:
    """The moment ``allowance`` ns after ``start`` when the time inside ``outages`` (sorted,
    disjoint) does not count."""
    at, left = start, allowance
    for begin, end in outages:
        if left <= 0:
            break
        if end <= at:
            continue
        if begin >= at + left:
            break
        left -= max(0, begin - at)
        at = end
    return at + left


def _first_grant(granted: Sequence[tuple[int, Process]], loss: HolderLoss) -> int | None:
    """The time of the first grant to another process at or after the loss."""
    i = bisect.bisect_left(granted, loss.time, key=lambda g: g[0])
    while i < len(granted):
        if granted[i][1] != loss.process:
            return granted[i][0]
        i += 1
    return None


class LivenessChecker:
    """``liveness``: needs the ``ttl`` option (seconds); ``failover`` and ``margin`` default."""

    name = "liveness"
    # valid needs a grant that succeeded (bench/checking.py, require_evidence)
    requires = ("acquire",)

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        calls = history.calls
        losses = holder_losses(calls)
        if not losses:
            return CheckResult(self.name, "valid", stats={"holder_losses": 0})
        if opts.ttl is None:
            return CheckResult(
                self.name,
                "unknown",
                stats={"holder_losses": len(losses)},
                reason="liveness needs the ttl option (the service's session TTL in seconds)",
            )
        allowance = int((opts.ttl + opts.failover + opts.margin) * NS)
        end_time = history.end_time
        outages = quorum_outages(history.ops)
        acquires: dict[str | None, list[Call]] = {}
        grants: dict[str | None, list[tuple[int, Process]]] = {}
        for call in calls:
            if call.invoke.f == "acquire":
                acquires.setdefault(call.invoke.key, []).append(call)
                if call.outcome == "ok" and call.completion is not None:
                    grants.setdefault(call.invoke.key, []).append(
                        (call.completion.time, call.process)
                    )
        for granted in grants.values():
            granted.sort(key=lambda g: g[0])
        anomalies: list[Anomaly] = []
        latencies: list[float] = []
        unchecked = 0
        held = {key: KeyHolds(key_holds) for key, key_holds in holds(calls).items()}
        nobody = KeyHolds(())
        for loss in losses:
            others_until = held.get(loss.key, nobody).held_by_others_until(loss)
            if others_until is None:
                unchecked += 1  # a live holder kept the lock to the end: nothing was owed
                continue
            owed_from = max(loss.time, others_until)
            deadline = deadline_outside(owed_from, allowance, outages)
            if deadline > end_time:
                unchecked += 1
                continue
            first_grant = _first_grant(grants.get(loss.key, []), loss)
            if first_grant is not None and first_grant <= deadline:
                latencies.append(max(0, first_grant - owed_from) / NS)
                continue
            others = [c for c in acquires.get(loss.key, []) if c.process != loss.process]
            waiting = [
                c
                for c in others
                if c.invoke.time <= deadline
                and (c.completion is None or c.completion.time > deadline)
            ]
            if not waiting:
                unchecked += 1
                continue
            waiter = waiting[0]
            late = (
                "never"
                if first_grant is None
                else f"only {(first_grant - loss.time) / NS:.3f} s later"
            )
            excluded = deadline - owed_from - allowance
            outage = (
                f", not counting {excluded / NS:.3f} s with a majority of the nodes down by "
                "the bench's faults"
                if excluded
                else ""
            )
            anomalies.append(
                Anomaly(
                    kind="lock-not-granted",
                    explanation=(
                        f"process {loss.process} {loss.cause} holding {loss.key!r} and process "
                        f"{waiter.process} was still waiting {allowance / NS:g} s later "
                        f"(ttl + failover + margin{outage}); the lock was granted {late}"
                    ),
                    op_indices=(loss.op.invoke.index, waiter.invoke.index),
                    key=loss.key,
                    processes=(loss.process, waiter.process),
                    time_start=loss.time,
                    time_end=deadline,
                )
            )
        stats: dict[str, Any] = {
            "holder_losses": len(losses),
            "recovered": len(latencies),
            "not_checkable": unchecked,
            "allowance_s": allowance / NS,
            "quorum_outages_s": round(sum(end - begin for begin, end in outages) / NS, 6),
        }
        if latencies:
            stats["recovery_median_s"] = round(statistics.median(latencies), 6)
            stats["recovery_max_s"] = round(max(latencies), 6)
        return CheckResult(
            self.name,
            "invalid" if anomalies else "valid",
            anomalies=tuple(anomalies[:MAX_REPORTED]),
            stats=stats,
        )
