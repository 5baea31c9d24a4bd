"""Watches: every grant and release in the history appears in each watcher's stream, in order,
exactly once, and every watcher saw the same event at the same revision.

A watch op's ok value lists the events received while it ran. A grant (ok acquire) or release (ok
release) that happened entirely inside a watch's run, on a lock under its prefix, must be in that
stream; an expiry may be reported as ``expired`` or ``released``. Revisions must increase.

Changes are matched to events by fencing token: a session that takes the same lock twice makes
two grants that differ only in their token, so matching by (kind, lock, session) alone would pair
the second grant with the first grant's event and report a false reordering. Without tokens (a
backend that has none) the changes of one (kind, lock, session) are matched to its events in
stream order, each to the first unused event after every event of the changes that completed
before it began.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lockbench.checks import Anomaly, CheckResult
from lockbench.history import Call, PairedHistory, Process
from lockbench.options import CheckOptions

MAX_REPORTED = 20
ACQUIRED = "acquired"
RELEASED = "released"


@dataclass(frozen=True, slots=True)
class LockChange:
    """An ok grant or release as a watcher should see it: kind, lock, session and token (a
    release carries the token of the grant it ends; None when the backend has no tokens)."""

    call: Call
    kind: str
    lock: str
    session: str | None
    token: int | None

    @property
    def invoke_index(self) -> int:
        return self.call.invoke.index

    @property
    def completion_index(self) -> int:
        assert self.call.completion is not None
        return self.call.completion.index

    def describe(self) -> str:
        token = "" if self.token is None else f" (token {self.token})"
        return f"{self.kind} of {self.lock!r} by session {self.session}{token}"


def _completion_time(change: LockChange) -> int:
    assert change.call.completion is not None
    return change.call.completion.time


def _window_end(watch: Call, arg: Mapping[str, Any]) -> int:
    """Until when a watcher must have seen every change: ``duration`` after its invocation.

    The watch workload reads for ``duration`` and then a settle period more, so the event of a
    change completed inside the window has had time to arrive even over a network. Watches from
    other tools (no ``duration``) are held to their completion, as before.
    """
    assert watch.completion is not None
    duration = arg.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
        return min(watch.completion.time, watch.invoke.time + int(duration * 1e9))
    return watch.completion.time


def _anomaly(kind: str, explanation: str, calls: Sequence[Call], key: str | None) -> Anomaly:
    indices = sorted(
        {c.invoke.index for c in calls} | {c.completion.index for c in calls if c.completion}
    )
    return Anomaly(
        kind=kind,
        explanation=explanation,
        op_indices=tuple(indices),
        key=key,
        processes=tuple(dict.fromkeys(c.process for c in calls)),
        time_start=min(c.invoke.time for c in calls),
        time_end=max((c.completion.time for c in calls if c.completion), default=None),
    )


def _token(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def lock_changes(calls: Sequence[Call]) -> list[LockChange]:
    """The ok grants and releases in invocation order. Releases often carry neither session nor
    token, so a release takes those of its process's latest grant of that lock."""
    latest: dict[tuple[Process, str], tuple[str | None, int | None]] = {}
    out: list[LockChange] = []
    for call in sorted(calls, key=lambda c: c.invoke.index):
        if call.invoke.f not in ("acquire", "release") or call.outcome != "ok":
            continue
        assert call.completion is not None
        lock = call.invoke.key or ""
        slot = (call.process, lock)
        own_session = call.completion.session or call.invoke.session
        if call.invoke.f == "acquire":
            session, token = own_session, _token(call.completion.value)
            latest[slot] = (session, token)
            out.append(LockChange(call, ACQUIRED, lock, session, token))
        else:
            held_session, token = latest.pop(slot, (None, None))
            out.append(LockChange(call, RELEASED, lock, own_session or held_session, token))
    return out


def _event_kind(event: Mapping[str, Any]) -> str:
    """An expiry ends a grant like a release does."""
    return ACQUIRED if event.get("kind") == ACQUIRED else RELEASED


def _events(call: Call) -> list[dict[str, Any]]:
    value = call.completion.value if call.completion is not None else None
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


class StreamIndex:
    """Where each change can be found in one watcher's stream.

    Events with a token are found by (kind, lock, token). Events without one are found by (lock,
    session): one session's grants and releases of one lock alternate, so a change's event is the
    next unused event of its lock and session after every event of the changes that completed
    before it began; if that next event is of the other kind, the change's own event is missing.
    """

    def __init__(self, stream: Sequence[Mapping[str, Any]]) -> None:
        self.by_token: dict[tuple[str, Any, int], int] = {}
        self.positions: dict[tuple[Any, Any], list[int]] = {}
        self.kinds: dict[tuple[Any, Any], list[str]] = {}
        self._last_used: dict[tuple[Any, Any], int] = {}
        for place, event in enumerate(stream):
            kind, lock, token = _event_kind(event), event.get("lock"), _token(event.get("token"))
            if token is not None:
                self.by_token.setdefault((kind, lock, token), place)
            else:
                holder = (lock, event.get("session"))
                self.positions.setdefault(holder, []).append(place)
                self.kinds.setdefault(holder, []).append(kind)

    def find(self, change: LockChange, after: int) -> int | None:
        """The change's position: its token's event, else its token-less event (see the class);
        an unused event at or before ``after`` is returned when none fits after it, so the caller
        reports it as out of order. None if the stream lacks the change."""
        if change.token is not None:
            place = self.by_token.get((change.kind, change.lock, change.token))
            if place is not None:
                return place
        holder = (change.lock, change.session)
        positions = self.positions.get(holder)
        if not positions:
            return None
        kinds = self.kinds[holder]
        last_used = self._last_used.get(holder, -1)
        first_unused = bisect.bisect_right(positions, last_used)
        following = bisect.bisect_right(positions, max(after, last_used))
        # The next event of this holder, then (out of order) the unused ones that came too early.
        candidates = [following] if following < len(positions) else []
        candidates += range(first_unused, min(following, len(positions)))
        for number in candidates:
            if kinds[number] == change.kind:
                self._last_used[holder] = positions[number]
                return positions[number]
        return None


class WatchesChecker:
    """``watches``: completeness, order, uniqueness and agreement of watch streams."""

    name = "watches"
    # valid needs a watch that succeeded (bench/checking.py, require_evidence)
    requires = ("watch",)

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        calls = history.calls
        watches = [c for c in calls if c.invoke.f == "watch" and c.outcome == "ok"]
        changes = lock_changes(calls)
        change_starts = [change.invoke_index for change in changes]
        anomalies: list[Anomaly] = []
        by_revision: dict[int, tuple[dict[str, Any], Call]] = {}
        checked_events = 0
        for watch in watches:
            assert watch.completion is not None
            stream = _events(watch)
            checked_events += len(stream)
            arg = watch.invoke.value if isinstance(watch.invoke.value, dict) else {}
            prefix = str(arg.get("prefix") or "")
            anomalies.extend(self._stream_anomalies(watch, stream, by_revision))
            first = bisect.bisect_right(change_starts, watch.invoke.index)
            last = bisect.bisect_left(change_starts, watch.completion.index)
            window_end = _window_end(watch, arg)
            inside = [
                change
                for change in changes[first:last]
                if change.lock.startswith(prefix)
                and change.completion_index < watch.completion.index
                and _completion_time(change) < window_end
            ]
            anomalies.extend(self._missing(watch, prefix, StreamIndex(stream), inside))
        stats = {"watches": len(watches), "events": checked_events, "anomalies": len(anomalies)}
        return CheckResult(
            self.name,
            "invalid" if anomalies else "valid",
            anomalies=tuple(anomalies[:MAX_REPORTED]),
            stats=stats,
        )

    @staticmethod
    def _stream_anomalies(
        watch: Call,
        stream: Sequence[dict[str, Any]],
        by_revision: dict[int, tuple[dict[str, Any], Call]],
    ) -> list[Anomaly]:
        """Revisions that do not increase, events received twice, and watchers that disagree."""
        out: list[Anomaly] = []
        last_revision: int | None = None
        seen: set[tuple[Any, ...]] = set()
        for event in stream:
            revision = event.get("revision")
            lock = event.get("lock")
            token = _token(event.get("token"))
            # One grant has one token; without tokens a re-acquisition by the same session is
            # told apart by its revision.
            identity = (
                _event_kind(event),
                lock,
                event.get("session"),
                token if token is not None else ("revision", revision),
            )
            if identity in seen:
                out.append(
                    _anomaly(
                        "watch-duplicate",
                        f"process {watch.process}'s watch received the {event.get('kind')} of "
                        f"{lock!r} by session {event.get('session')} (token {token}) twice",
                        [watch],
                        lock,
                    )
                )
            elif (
                isinstance(revision, int)
                and last_revision is not None
                and revision <= last_revision
            ):
                out.append(
                    _anomaly(
                        "watch-out-of-order",
                        f"process {watch.process}'s watch received revision {revision} "
                        f"after revision {last_revision}",
                        [watch],
                        lock,
                    )
                )
            seen.add(identity)
            if not isinstance(revision, int):
                continue
            last_revision = revision if last_revision is None else max(last_revision, revision)
            other = by_revision.get(revision)
            if other is None:
                by_revision[revision] = (event, watch)
            elif other[0] != event:
                out.append(
                    _anomaly(
                        "watch-disagreement",
                        f"two watchers received different events at revision {revision}: "
                        f"{other[0]} and {event}",
                        [other[1], watch],
                        lock,
                    )
                )
        return out

    @staticmethod
    def _missing(
        watch: Call, prefix: str, index: StreamIndex, inside: Sequence[LockChange]
    ) -> list[Anomaly]:
        """Changes made entirely while the watch ran (``inside``, in invocation order) that its
        stream lacks, or places before a change that completed before they began."""
        out: list[Anomaly] = []
        # Matched changes not yet known to precede the current one: (completion, position, i).
        pending: list[tuple[int, int, int]] = []
        bound = -1  # the latest position among changes that completed before the current began
        bound_change: LockChange | None = None
        for number, change in enumerate(inside):
            while pending and pending[0][0] < change.invoke_index:
                _, position, earlier = heapq.heappop(pending)
                if position > bound:
                    bound, bound_change = position, inside[earlier]
            position_found = index.find(change, bound)
            if position_found is None:
                out.append(
                    _anomaly(
                        "watch-missed-event",
                        f"process {watch.process}'s watch on prefix {prefix!r} never received "
                        f"the {change.describe()} that completed while it ran",
                        [watch, change.call],
                        change.lock,
                    )
                )
                continue
            if bound_change is not None and position_found < bound:
                out.append(
                    _anomaly(
                        "watch-out-of-order",
                        f"process {watch.process}'s watch received the {change.describe()} "
                        f"(op {change.invoke_index}) before the {bound_change.describe()} "
                        f"(op {bound_change.invoke_index}), which completed first",
                        [watch, bound_change.call, change.call],
                        change.lock,
                    )
                )
            heapq.heappush(pending, (change.completion_index, position_found, number))
        return out
