"""Watches: every grant and release in the history appears in each watcher's stream, in order,
exactly once, and every watcher saw the same event at the same revision.

A watch op's ok value lists the events received while it ran. A grant (ok acquire) or release (ok
release) that happened entirely inside a watch's run, on a lock under its prefix, must be in that
stream; an expiry may be reported as ``expired`` or ``released``. Revisions must increase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.checker.options import CheckOptions
from bench.history import Call, Op, pair_calls
from bench.protocols import Anomaly, CheckResult

MAX_REPORTED = 20


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


def _sessions(changes: Sequence[Call]) -> dict[int, str | None]:
    """The session of each grant and release, by invocation index. Releases often do not carry
    one, so a release takes the session of its process's latest grant of that lock."""
    latest: dict[tuple[Any, str | None], str | None] = {}
    out: dict[int, str | None] = {}
    for change in sorted(changes, key=lambda c: c.invoke.index):
        assert change.completion is not None
        slot = (change.process, change.invoke.key)
        own = change.completion.session or change.invoke.session
        if change.invoke.f == "acquire":
            latest[slot] = own
        out[change.invoke.index] = own or latest.get(slot)
    return out


def _events(call: Call) -> list[dict[str, Any]]:
    value = call.completion.value if call.completion is not None else None
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


class WatchesChecker:
    """``watches``: completeness, order, uniqueness and agreement of watch streams."""

    name = "watches"

    def check(self, history: Sequence[Op], options: Mapping[str, Any]) -> CheckResult:
        CheckOptions.from_mapping(options)
        calls = pair_calls(history)
        watches = [c for c in calls if c.invoke.f == "watch" and c.outcome == "ok"]
        lock_changes = [
            c for c in calls if c.invoke.f in ("acquire", "release") and c.outcome == "ok"
        ]
        sessions = _sessions(lock_changes)
        anomalies: list[Anomaly] = []
        by_revision: dict[int, tuple[dict[str, Any], Call]] = {}
        checked_events = 0
        for watch in watches:
            assert watch.completion is not None
            stream = _events(watch)
            checked_events += len(stream)
            arg = watch.invoke.value if isinstance(watch.invoke.value, dict) else {}
            prefix = str(arg.get("prefix") or "")
            last_revision: int | None = None
            seen: set[tuple[Any, ...]] = set()
            for event in stream:
                revision = event.get("revision")
                identity = (
                    event.get("kind"),
                    event.get("lock"),
                    event.get("session"),
                    event.get("token"),
                )
                if isinstance(revision, int):
                    if last_revision is not None and revision <= last_revision:
                        anomalies.append(
                            _anomaly(
                                "watch-out-of-order",
                                f"process {watch.process}'s watch received revision {revision} "
                                f"after revision {last_revision}",
                                [watch],
                                event.get("lock"),
                            )
                        )
                    last_revision = revision
                    other = by_revision.get(revision)
                    if other is None:
                        by_revision[revision] = (event, watch)
                    elif other[0] != event:
                        anomalies.append(
                            _anomaly(
                                "watch-disagreement",
                                f"two watchers received different events at revision {revision}: "
                                f"{other[0]} and {event}",
                                [other[1], watch],
                                event.get("lock"),
                            )
                        )
                if identity in seen:
                    anomalies.append(
                        _anomaly(
                            "watch-duplicate",
                            f"process {watch.process}'s watch received {identity[0]} of "
                            f"{identity[1]!r} by session {identity[2]} twice",
                            [watch],
                            event.get("lock"),
                        )
                    )
                seen.add(identity)
            anomalies.extend(self._missing(watch, prefix, stream, lock_changes, sessions))
        stats = {"watches": len(watches), "events": checked_events, "anomalies": len(anomalies)}
        return CheckResult(
            self.name,
            "invalid" if anomalies else "valid",
            anomalies=tuple(anomalies[:MAX_REPORTED]),
            stats=stats,
        )

    @staticmethod
    def _missing(
        watch: Call,
        prefix: str,
        stream: Sequence[dict[str, Any]],
        changes: Sequence[Call],
        sessions: Mapping[int, str | None],
    ) -> list[Anomaly]:
        """Changes made entirely while the watch ran that its stream lacks or misorders."""
        assert watch.completion is not None
        positions: dict[tuple[str, Any, Any], int] = {}
        for place, event in enumerate(stream):
            kind = "acquired" if event.get("kind") == "acquired" else "released"
            positions.setdefault((kind, event.get("lock"), event.get("session")), place)
        out: list[Anomaly] = []
        expected: list[tuple[Call, int]] = []
        for change in changes:
            lock = change.invoke.key or ""
            assert change.completion is not None
            if not lock.startswith(prefix):
                continue
            if change.invoke.index < watch.invoke.index or change.completion.index > (
                watch.completion.index
            ):
                continue
            kind = "acquired" if change.invoke.f == "acquire" else "released"
            session = sessions.get(change.invoke.index)
            position = positions.get((kind, lock, session))
            if position is None:
                out.append(
                    _anomaly(
                        "watch-missed-event",
                        f"process {watch.process}'s watch on prefix {prefix!r} never received the "
                        f"{kind} of {lock!r} by session {session} that completed while it ran",
                        [watch, change],
                        lock,
                    )
                )
                continue
            expected.append((change, position))
        # Changes ordered in real time (one completed before the other began) must be in order.
        expected.sort(key=lambda item: item[0].invoke.index)
        latest: tuple[Call, int] | None = None
        for change, position in expected:
            if latest is not None and position < latest[1]:
                assert latest[0].completion is not None
                if latest[0].completion.index < change.invoke.index:
                    out.append(
                        _anomaly(
                            "watch-out-of-order",
                            f"process {watch.process}'s watch received the change of op "
                            f"{change.invoke.index} before that of op {latest[0].invoke.index}, "
                            "which completed first",
                            [watch, latest[0], change],
                            change.invoke.key,
                        )
                    )
            if latest is None or position > latest[1]:
                latest = (change, position)
        return out
