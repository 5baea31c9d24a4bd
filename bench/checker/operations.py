"""Turn a history into the per-key operations a linearizability model checks.

Positions are history indices times two, so real-time order is the order the history recorded
(no ties), and a synthetic op placed "just after" a record gets the odd position in between.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Hashable, Sequence
from typing import Any

import msgspec

from lockbench.history import Call, Process, RecordTimes

# The synthetic operation that stands for a lock service releasing a lock on its own: the
# session of a crashed or stalled holder expired. It is optional, like an info op.
SESSION_EXPIRY = "session-expiry"
# A holder's record that its lease may have lapsed since ``value["since"]`` (docs/history.md).
LEASE_LOST = "lease-lost"


class LinOp(msgspec.Struct, frozen=True, gc=False):
    """One operation as the search sees it (a Struct: a million are built per 1M-record check,
    ~3x faster than a frozen dataclass).

    ``ret`` is None for ops that may take effect at any time after ``call`` or never (info ops,
    unfinished ops, session expiries); ``known`` says whether ``out`` is the op's real result.
    """

    process: Process
    call: int
    ret: int | None
    f: str
    arg: Hashable
    out: Hashable
    known: bool
    invoke_index: int
    completion_index: int | None
    time_start: int
    time_end: int | None
    failed: bool = False

    @property
    def required(self) -> bool:
        return self.ret is not None

    def describe(self) -> str:
        outcome = "failed" if self.failed else ("ok" if self.known else "info")
        if self.f == SESSION_EXPIRY:
            return f"session expiry of process {self.process}"
        if self.f == "owner" and isinstance(self.out, tuple):
            holders, token = self.out
            held = ", ".join(f"process {h}" for h in holders) or "nobody"
            return f"process {self.process} owner -> {held} (token {token})"
        if self.failed:
            return f"process {self.process} {self.f} {_thaw(self.arg)!r} (failed)"
        parts = [f"process {self.process} {self.f}"]
        if self.arg is not None:
            parts.append(repr(_thaw(self.arg)))
        parts.append(f"-> {_thaw(self.out)!r} ({outcome})" if self.known else f"({outcome})")
        return " ".join(parts)


def freeze(value: Any) -> Hashable:
    """JSON values made hashable, so model states can be memoised."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("__map__", tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, set | frozenset):
        return ("__set__", tuple(sorted((freeze(v) for v in value), key=repr)))
    return value  # type: ignore[no-any-return]


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == "__map__":
            return {k: _thaw(v) for k, v in value[1]}
        return [_thaw(v) for v in value]
    return value


class Conversion(msgspec.Struct, frozen=True, gc=False):
    """How the calls of a history map to model inputs (filled in by each model)."""

    f: str
    arg: Hashable
    out: Hashable
    known: bool
    failed: bool = False


def calls_by_key(calls: Sequence[Call], operations: frozenset[str]) -> dict[str | None, list[Call]]:
    """Group the calls the model understands by key."""
    by_key: dict[str | None, list[Call]] = {}
    for call in calls:
        if call.invoke.f in operations:
            by_key.setdefault(call.invoke.key, []).append(call)
    return by_key


def lin_op(call: Call, conv: Conversion, *, required: bool) -> LinOp:
    """Build the search's view of a call; optional ops get no return position."""
    invoke = call.invoke
    index = invoke.index
    comp = call.completion
    if comp is None:
        return LinOp(
            invoke.process,
            index * 2,
            None,
            conv.f,
            conv.arg,
            conv.out,
            conv.known,
            index,
            None,
            invoke.time,
            None,
            conv.failed,
        )
    return LinOp(
        invoke.process,
        index * 2,
        comp.index * 2 if required else None,
        conv.f,
        conv.arg,
        conv.out,
        conv.known,
        index,
        comp.index,
        invoke.time,
        comp.time,
        conv.failed,
    )


def session_expiries(
    all_calls: Sequence[Call],
    end_index: int,
    end_time: int,
    *,
    record_times: RecordTimes | None = None,
) -> dict[Process, list[LinOp]]:
    """Optional releases, per process, for holders whose session may expire without a release.

    A process that is retired (its last op is ``info`` or unfinished) may hold any lock it ever
    acquired, so its session may expire at any time after that op's completion (or the end of the
    history). A process that ``stall``s stops heartbeating, so the same holds from the stall's
    invocation. A ``lease-lost`` record says the service may have expired the session from time
    ``since`` on, so the same holds from the first record at or after that time. Callers attach
    these to the keys the process acquired; an expiry of a process that does not hold the lock is
    illegal in every lock model, so extra ones cost only search time.
    """
    out: dict[Process, list[LinOp]] = {}
    # where times fall among all client records (given when ``all_calls`` are only some calls)
    timeline = record_times
    for call in all_calls:
        p = call.process
        if call.invoke.f == LEASE_LOST:
            # placed just before the first record at or after ``since`` (never after the record
            # itself: the client knew by then); from there on the lock may have been released
            timeline = timeline or _Timeline(all_calls)
            since = _since(call)
            index = timeline.first_at_or_after(since, limit=call.invoke.index)
            time = call.invoke.time if since is None else min(since, call.invoke.time)
            out.setdefault(p, []).append(_expiry(p, index * 2 - 1, index - 1, time))
        elif call.invoke.f == "stall":
            point = call.invoke
            out.setdefault(p, []).append(_expiry(p, point.index * 2 + 1, point.index, point.time))
        elif call.outcome == "info":
            assert call.completion is not None
            point = call.completion
            out.setdefault(p, []).append(_expiry(p, point.index * 2 + 1, point.index, point.time))
        elif call.outcome is None:
            out.setdefault(p, []).append(_expiry(p, end_index * 2 + 1, end_index, end_time))
    return out


def _since(call: Call) -> int | None:
    value = call.invoke.value
    since = value.get("since") if isinstance(value, dict) else None
    return since if isinstance(since, int) and not isinstance(since, bool) else None


class _Timeline:
    """The client records' (index, time) in index order, to find where a time falls."""

    def __init__(self, calls: Sequence[Call]) -> None:
        records = sorted(
            (op.index, op.time)
            for call in calls
            for op in (call.invoke, call.completion)
            if op is not None
        )
        self.indices = [index for index, _ in records]
        # running maximum of the times, so a bisection finds the first record at or after a time
        self.reached = list(itertools.accumulate((t for _, t in records), max))

    def first_at_or_after(self, time: int | None, *, limit: int) -> int:
        """Index of the first record whose time is >= ``time``, at most ``limit``."""
        if time is None:
            return limit
        at = bisect.bisect_left(self.reached, time)
        return min(self.indices[at], limit) if at < len(self.indices) else limit


def _expiry(process: Process, position: int, index: int, time: int) -> LinOp:
    return LinOp(
        process=process,
        call=position,
        ret=None,
        f=SESSION_EXPIRY,
        arg=None,
        out=None,
        known=False,
        invoke_index=index,
        completion_index=None,
        time_start=time,
        time_end=None,
    )
