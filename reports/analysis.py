"""The report's analysis of a history, as pandas frames the figures plot directly.

Times are seconds since the test started (the history's nanoseconds / 1e9), the unit a person
reads on an axis. Nothing here draws; ``reports.figures`` turns these frames into plotly figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lockbench.history import Call, Op
from lockbench.protocols import Anomaly, CheckResult

NS_PER_S = 1e9
# Past this many calls the timeline and latency scatter keep a thinned sample of the ``ok`` calls
# (every fail/info call and every op an anomaly names stay). Plotly keeps panning smooth at about
# this size per figure on a laptop; the measured cost is in docs/performance.md.
MAX_PLOTTED_CALLS = 20_000
# Aim for about this many buckets for the per-bucket percentiles and throughput.
TARGET_BUCKETS = 150
NICE_BUCKETS_S: tuple[float, ...] = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
OUTCOMES: tuple[str, ...] = ("ok", "fail", "info", "pending")


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault from its start-<fault> record to its stop-<fault> record (or the end)."""

    fault: str
    start: float
    end: float
    targets: str
    healed: bool
    detail: str = ""

    @property
    def label(self) -> str:
        suffix = "" if self.healed else " (not healed)"
        return f"{self.fault} {self.targets}{suffix}" if self.targets else self.fault + suffix


@dataclass(frozen=True, slots=True)
class LeaderSpan:
    """Who the observer saw as leader from ``start`` to ``end``; ``leader`` None is a gap."""

    leader: str | None
    term: int | None
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A span to highlight (a counterexample or an anomaly), with the ops that define it."""

    start: float
    end: float
    label: str


def calls_frame(calls: Sequence[Call], end_time: float) -> pd.DataFrame:
    """One row per client call; a call with no completion is ``pending`` and drawn to the end."""
    n = len(calls)
    process = np.empty(n, dtype=np.int64)
    t0 = np.empty(n)
    t1 = np.empty(n)
    inv_index = np.empty(n, dtype=np.int64)
    done_index = np.full(n, -1, dtype=np.int64)
    f: list[str] = []
    key: list[str] = []
    outcome: list[str] = []
    error: list[str] = []
    invoke_value: list[Any] = []
    result: list[Any] = []
    for i, call in enumerate(calls):
        inv, done = call.invoke, call.completion
        process[i] = inv.process if isinstance(inv.process, int) else -1
        t0[i] = inv.time / NS_PER_S
        inv_index[i] = inv.index
        f.append(inv.f)
        key.append(inv.key or "")
        invoke_value.append(inv.value)
        if done is None:
            t1[i] = np.nan
            outcome.append("pending")
            error.append("")
            result.append(None)
        else:
            t1[i] = done.time / NS_PER_S
            done_index[i] = done.index
            outcome.append(done.type)
            error.append(done.error or "")
            result.append(done.value)
    frame = pd.DataFrame(
        {
            "process": process,
            "f": pd.Categorical(f),
            "key": key,
            "outcome": pd.Categorical(outcome, categories=list(OUTCOMES)),
            "t0": t0,
            "t1": t1,
            "inv_index": inv_index,
            "done_index": done_index,
            "error": error,
            "invoke_value": pd.Series(invoke_value, dtype=object),
            "result": pd.Series(result, dtype=object),
        }
    )
    frame["latency_ms"] = (frame["t1"] - frame["t0"]) * 1000.0
    frame["t_end"] = frame["t1"].fillna(max(end_time, float(frame["t0"].max() or 0.0)))
    return frame


def nemesis_records(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if type(op.process) is not int]  # not is_client, inlined (1M+ ops)


def fault_windows(ops: Sequence[Op], end_time: float) -> list[FaultWindow]:
    """Pair each start-<fault> with the next stop-<fault>; an unpaired start runs to the end."""
    open_faults: dict[str, tuple[float, str, str]] = {}
    windows: list[FaultWindow] = []
    for op in nemesis_records(ops):
        if op.type != "info":
            continue
        t = op.time / NS_PER_S
        if op.f.startswith("start-"):
            fault = op.f.removeprefix("start-")
            if fault in open_faults:
                start, targets, detail = open_faults.pop(fault)
                windows.append(FaultWindow(fault, start, t, targets, True, detail))
            detail = json.dumps(op.value, default=str)[:300]
            open_faults[fault] = (t, describe_fault_targets(op.value), detail)
        elif op.f.startswith("stop-"):
            fault = op.f.removeprefix("stop-")
            if fault in open_faults:
                start, targets, detail = open_faults.pop(fault)
                windows.append(FaultWindow(fault, start, t, targets, True, detail))
    for fault, (start, targets, detail) in open_faults.items():
        windows.append(FaultWindow(fault, start, max(end_time, start), targets, False, detail))
    windows.sort(key=lambda w: w.start)
    return windows


def describe_fault_targets(value: Any) -> str:
    """Which nodes a fault hit, in a few words: partition sides, or the nodes and the amount."""
    if not isinstance(value, Mapping):
        return ""
    grudge = value.get("grudge")
    if isinstance(grudge, Mapping) and grudge:
        sides: list[frozenset[str]] = []
        for node, cut in grudge.items():
            side = frozenset([str(node)]) | frozenset(
                str(n) for n in grudge if set(grudge.get(n) or ()) == set(cut or ())
            )
            if side not in sides:
                sides.append(side)
        return " | ".join(",".join(sorted(side)) for side in sides)
    nodes = value.get("nodes")
    parts: list[str] = []
    if isinstance(nodes, Sequence) and not isinstance(nodes, str):
        parts.append(",".join(str(n) for n in nodes))
    for detail, unit in (("offset_ms", " ms"), ("delay_ms", " ms"), ("loss", "")):
        if isinstance(value.get(detail), int | float):
            parts.append(f"{value[detail]:+g}{unit}" if unit else f"loss {value[detail]}")
    return " ".join(parts)


def leader_spans(ops: Sequence[Op], end_time: float) -> list[LeaderSpan]:
    """Spans between successive leader observations; a change of leader or term starts a span."""
    observations: list[tuple[float, str | None, int | None]] = []
    for op in nemesis_records(ops):
        if op.f != "leader" or not isinstance(op.value, Mapping):
            continue
        leader = op.value.get("leader")
        term = op.value.get("term")
        observations.append(
            (
                op.time / NS_PER_S,
                str(leader) if leader else None,
                int(term) if isinstance(term, int) else None,
            )
        )
    spans: list[LeaderSpan] = []
    for t, leader, term in observations:
        if spans and spans[-1].leader == leader and spans[-1].term == term:
            continue
        if spans:
            last = spans[-1]
            spans[-1] = LeaderSpan(last.leader, last.term, last.start, t)
        spans.append(LeaderSpan(leader, term, t, max(t, end_time)))
    return spans


# Faults whose start may begin a failover (the leader killed, paused or cut off).
FAILOVER_FAULTS: frozenset[str] = frozenset({"kill", "pause", "partition"})


def failover_gaps(
    spans: Sequence[LeaderSpan], faults: Sequence[FaultWindow] = ()
) -> list[tuple[float, float, str]]:
    """(start, end, text) for each failover: a time no leader was known, from one leader to
    the next, and a change from one leader straight to another with no leaderless sample in
    between (the new leader won before the next poll). Such a change is timed from the last
    kill, pause or partition that started during the old leader's span, else from the moment
    the new leader was first seen (a change the poll could not time)."""
    gaps: list[tuple[float, float, str]] = []
    for i, span in enumerate(spans):
        previous = spans[i - 1] if i else None
        if (
            span.leader is not None
            and previous is not None
            and previous.leader is not None
            and previous.leader != span.leader
        ):
            causes = [
                w.start
                for w in faults
                if w.fault in FAILOVER_FAULTS and previous.start <= w.start <= span.start
            ]
            start = max(causes) if causes else span.start
            took = f"{span.start - start:.2f} s" if causes else "under one poll"
            text = f"failover {took}: {previous.leader} → {span.leader}"
            gaps.append((start, span.start, text))
            continue
        if span.leader is not None:
            continue
        before = next((s.leader for s in reversed(spans[:i]) if s.leader), None)
        after = next((s for s in spans[i + 1 :] if s.leader), None)
        if after is None:
            gaps.append((span.start, span.end, f"no leader since {span.start:.2f} s"))
            continue
        text = f"failover {after.start - span.start:.2f} s: {before or '?'} → {after.leader}"
        gaps.append((span.start, after.start, text))
    return gaps


def clock_offsets(ops: Sequence[Op]) -> pd.DataFrame:
    rows: list[tuple[float, str, float]] = []
    for op in nemesis_records(ops):
        if op.f != "clock" or not isinstance(op.value, Mapping):
            continue
        offsets = op.value.get("offsets_ms")
        if not isinstance(offsets, Mapping):
            continue
        t = op.time / NS_PER_S
        rows.extend(
            (t, str(node), float(off))
            for node, off in offsets.items()
            if isinstance(off, int | float)
        )
    return pd.DataFrame(rows, columns=["time", "node", "offset_ms"])


def lock_holds(calls: pd.DataFrame, ttl_s: float | None) -> pd.DataFrame:
    """Who held each lock when: acquire completion to the matching release's completion.

    ``certain`` holds start at an ok acquire. An acquire whose outcome is unknown (info or
    pending) may have been granted: it is drawn as a possible hold from its invocation until
    the session could have expired (completion + TTL, when the test states one).
    """
    lock_ops = calls[calls["f"].isin(["acquire", "release"])].sort_values("inv_index")
    columns = [
        "key",
        "process",
        "token",
        "start",
        "end",
        "held_until",
        "certain",
        "index",
        "ended_by",
    ]
    if lock_ops.empty:
        return pd.DataFrame(columns=columns)
    nxt = lock_ops.groupby(["process", "key"], sort=False).shift(-1)
    acquires = lock_ops[(lock_ops["f"] == "acquire") & (lock_ops["outcome"] != "fail")]
    nxt = nxt.loc[acquires.index]
    certain = (acquires["outcome"] == "ok").to_numpy()
    released = (nxt["f"] == "release").to_numpy()
    run_end = float(calls["t_end"].max())
    ttl = ttl_s or 0.0
    unreleased_end = np.maximum(acquires["t_end"].to_numpy() + ttl, run_end)
    end = np.where(
        certain,
        np.where(released, nxt["t_end"].to_numpy(dtype=float), unreleased_end),
        acquires["t_end"].to_numpy() + ttl,
    )
    start = np.where(certain, acquires["t1"].to_numpy(), acquires["t0"].to_numpy())
    # the client certainly believed it held the lock until it asked to release it
    held_until = np.where(certain, np.where(released, nxt["t0"].to_numpy(dtype=float), end), np.nan)
    tokens = [
        r if isinstance(r, int) and c else None
        for r, c in zip(acquires["result"], certain, strict=True)
    ]
    release_outcome = nxt["outcome"].astype(str).to_numpy()
    ended_by = np.where(
        certain,
        np.where(released, "release " + release_outcome, "no release recorded"),
        "acquire " + acquires["outcome"].astype(str).to_numpy(),
    )
    return pd.DataFrame(
        {
            "key": acquires["key"].to_numpy(),
            "process": acquires["process"].to_numpy(),
            "token": pd.array(tokens, dtype="Int64"),
            "start": start,
            "end": end,
            "held_until": held_until,
            "certain": certain,
            "index": acquires["inv_index"].to_numpy(),
            "ended_by": ended_by,
        },
        columns=columns,
    )


def overlapping_holds(holds: pd.DataFrame) -> pd.DataFrame:
    """Spans where two clients of one lock both believed they held it.

    A client believes it holds a lock from its acquire's ok until it invokes release. Two such
    spans overlapping is what mutual exclusion forbids (or what a lease expiry makes possible and
    fencing must catch): the report shades these on the lock chart whatever the checkers said.
    """
    columns = ["key", "start", "end", "first", "second", "tokens"]
    rows: list[tuple[Any, ...]] = []
    certain = holds[holds["certain"]].sort_values(["key", "start"])
    for key, group in certain.groupby("key", sort=True):
        best_end, best_process, best_token = -np.inf, None, None
        for start, until, process, token in zip(
            group["start"], group["held_until"], group["process"], group["token"], strict=True
        ):
            if start < best_end and process != best_process:
                end = min(best_end, until)
                tokens = f"{_token_text(best_token)} & {_token_text(token)}"
                rows.append((key, start, end, best_process, process, tokens))
            if until > best_end:
                best_end, best_process, best_token = until, process, token
    return pd.DataFrame(rows, columns=columns)


def _token_text(token: Any) -> str:
    return "?" if token is None or token is pd.NA else str(token)


def resource_accesses(calls: pd.DataFrame) -> pd.DataFrame:
    """Completed res-* calls: the token offered and whether the resource accepted it."""
    res = calls[
        calls["f"].astype(str).str.startswith("res-") & calls["outcome"].isin(["ok", "fail"])
    ]
    tokens = [v.get("token") if isinstance(v, Mapping) else None for v in res["invoke_value"]]
    accepted = [
        bool(r.get("accepted")) if isinstance(r, Mapping) else o == "ok"
        for r, o in zip(res["result"], res["outcome"], strict=True)
    ]
    return pd.DataFrame(
        {
            "key": res["key"].to_numpy(),
            "process": res["process"].to_numpy(),
            "f": res["f"].astype(str).to_numpy(),
            "time": res["t1"].to_numpy(),
            "token": pd.array(tokens, dtype="Int64"),
            "accepted": np.array(accepted, dtype=bool),
            "index": res["done_index"].to_numpy(),
        }
    )


def bucket_seconds(duration: float) -> float:
    """A round bucket width giving about TARGET_BUCKETS buckets over the run."""
    wanted = duration / TARGET_BUCKETS
    return next((b for b in NICE_BUCKETS_S if b >= wanted), NICE_BUCKETS_S[-1])


def latency_percentiles(calls: pd.DataFrame, bucket_s: float) -> pd.DataFrame:
    """p50/p95/p99 latency (ms) of completed calls per bucket of invocation time."""
    done = calls[calls["outcome"].isin(["ok", "fail", "info"])]
    if done.empty:
        return pd.DataFrame(columns=["time", "p50", "p95", "p99"])
    bucket = (done["t0"] // bucket_s) * bucket_s
    grouped = done["latency_ms"].groupby(bucket)
    frame = pd.DataFrame(
        {"p50": grouped.quantile(0.5), "p95": grouped.quantile(0.95), "p99": grouped.quantile(0.99)}
    )
    frame.index.name = "time"
    frame = frame.reset_index()
    frame["time"] = frame["time"] + bucket_s / 2
    return frame


def throughput(calls: pd.DataFrame, bucket_s: float) -> pd.DataFrame:
    """Completions per second by outcome, per bucket of completion time."""
    done = calls[calls["outcome"].isin(["ok", "fail", "info"])]
    if done.empty:
        return pd.DataFrame(columns=["time", "ok", "fail", "info"])
    bucket = (done["t1"] // bucket_s) * bucket_s
    table = pd.crosstab(bucket, done["outcome"].astype(str)) / bucket_s
    for outcome in ("ok", "fail", "info"):
        if outcome not in table.columns:
            table[outcome] = 0.0
    table.index.name = "time"
    table = table.reset_index()
    table["time"] = table["time"] + bucket_s / 2
    return table[["time", "ok", "fail", "info"]]


def anomaly_indices(results: Sequence[CheckResult]) -> set[int]:
    """Every op index an anomaly or counterexample window names (kept when thinning)."""
    keep: set[int] = set()
    for result in results:
        for anomaly in result.anomalies:
            keep.update(anomaly.op_indices)
        if result.window:
            keep.update(range(result.window[0], result.window[1] + 1))
    return keep


def thin_calls(calls: pd.DataFrame, keep_indices: set[int], limit: int) -> pd.DataFrame:
    """About ``limit`` rows in history order: every op an anomaly names, then as many fail/info/
    pending calls as fit (evenly spaced if they do not all fit), then evenly spaced ok calls."""
    if len(calls) <= limit:
        return calls
    named = calls["inv_index"].isin(keep_indices) | calls["done_index"].isin(keep_indices)
    not_ok = (calls["outcome"] != "ok").to_numpy()
    return thin_rows(calls, named.to_numpy(), limit, preferred=not_ok).sort_values("inv_index")


def thin_rows(
    frame: pd.DataFrame,
    must_keep: np.ndarray,
    limit: int,
    preferred: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rows flagged ``must_keep`` always; then ``preferred`` rows, then the others, each tier
    thinned evenly to what room is left, for about ``limit`` rows in all."""
    if len(frame) <= limit:
        return frame
    tiers = [~must_keep] if preferred is None else [preferred & ~must_keep, ~preferred & ~must_keep]
    kept = [frame[must_keep]]
    room = max(limit - int(must_keep.sum()), 0)
    for tier in tiers:
        rows = frame[tier]
        take = min(room, len(rows))
        picks = np.unique(np.linspace(0, len(rows) - 1, take).astype(np.int64))
        kept.append(rows.iloc[picks[:take]])
        room -= len(picks[:take])
    return pd.concat(kept)


def op_times(ops: Sequence[Op]) -> dict[int, float]:
    return {op.index: op.time / NS_PER_S for op in ops}


def anomaly_span(anomaly: Anomaly, times: Mapping[int, float]) -> tuple[float, float] | None:
    """The anomaly's time span: its stated times, else the span of the ops it names."""
    if anomaly.time_start is not None and anomaly.time_end is not None:
        return anomaly.time_start / NS_PER_S, anomaly.time_end / NS_PER_S
    known = [times[i] for i in anomaly.op_indices if i in times]
    if not known:
        return None
    return min(known), max(known)


def counterexample_windows(
    results: Sequence[CheckResult], times: Mapping[int, float]
) -> list[TimeWindow]:
    windows: list[TimeWindow] = []
    for result in results:
        if not result.window:
            continue
        first, last = result.window
        if first in times and last in times:
            label = f"{result.checker} counterexample (ops {first} to {last})"
            windows.append(TimeWindow(times[first], times[last], label))
    return windows


@dataclass(frozen=True, slots=True)
class AnomalyGroup:
    """Anomalies of one checker, kind and cause: the report lists one line per group."""

    checker: str
    kind: str
    cause: str
    members: tuple[tuple[int, Anomaly], ...]  # (number in the report, anomaly), in order
    span: tuple[float, float] | None

    @property
    def first(self) -> tuple[int, Anomaly]:
        return self.members[0]


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def anomaly_cause(explanation: str) -> str:
    """The explanation with its particulars (locks, processes, tokens, times) left out: two
    anomalies with the same cause differ only in where and when they happened."""
    return _NUMBER.sub("#", _QUOTED.sub("…", explanation))


def group_anomalies(
    results: Sequence[CheckResult], times: Mapping[int, float]
) -> list[AnomalyGroup]:
    """Anomalies grouped by checker, kind and cause, numbered 1.. in checker order; each group
    spans its members' time spans (None when none of them has a time)."""
    grouped: dict[tuple[str, str, str], list[tuple[int, Anomaly]]] = {}
    number = 0
    for result in results:
        for anomaly in result.anomalies:
            number += 1
            key = (result.checker, anomaly.kind, anomaly_cause(anomaly.explanation))
            grouped.setdefault(key, []).append((number, anomaly))
    groups = []
    for (checker, kind, cause), members in grouped.items():
        spans = [s for _, a in members if (s := anomaly_span(a, times)) is not None]
        span = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
        groups.append(AnomalyGroup(checker, kind, cause, tuple(members), span))
    return groups
