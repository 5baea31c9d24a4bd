"""Watch events and the bounded event log that makes watches resumable.

Every event gets a revision from one global counter kept in the replicated state, so all
replicas number events identically. The last ``capacity`` events are kept (also in snapshots); a
watch that resumes from a revision older than the oldest kept one gets ``RevisionCompacted``
and must re-read the current state instead of silently missing events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

EventKind: TypeAlias = Literal["acquired", "released", "expired"]
DEFAULT_EVENT_LOG_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of a lock, in the service's total order (``revision`` strictly increases)."""

    revision: int
    kind: EventKind
    name: str
    session: str | None
    token: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "kind": self.kind,
            "name": self.name,
            "session": self.session,
            "token": self.token,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchEvent:
        return cls(data["revision"], data["kind"], data["name"], data["session"], data["token"])


class RevisionCompacted(Exception):
    """The requested resume revision was dropped from the bounded event log."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(
            f"revision {requested} was compacted away (oldest kept: {oldest}); "
            "re-read the current owners and watch again from revision 0"
        )
        self.requested = requested
        self.oldest = oldest


class EventLog:
    """The last ``capacity`` events, in revision order."""

    def __init__(self, capacity: int = DEFAULT_EVENT_LOG_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("event log capacity must be at least 1")
        self.capacity = capacity
        self._events: deque[WatchEvent] = deque(maxlen=capacity)
        self.last_revision = 0

    def append(
        self, kind: EventKind, name: str, session: str | None, token: int | None
    ) -> WatchEvent:
        self.last_revision += 1
        event = WatchEvent(self.last_revision, kind, name, session, token)
        self._events.append(event)
        return event

    @property
    def oldest_revision(self) -> int:
        """The oldest revision still kept (``last_revision + 1`` when empty)."""
        return self._events[0].revision if self._events else self.last_revision + 1

    def since(self, from_revision: int, prefix: str = "") -> Iterator[WatchEvent]:
        """Events with revision >= ``from_revision`` whose name starts with ``prefix``."""
        if from_revision <= self.last_revision and from_revision < self.oldest_revision:
            raise RevisionCompacted(from_revision, self.oldest_revision)
        for event in self._events:
            if event.revision >= from_revision and event.name.startswith(prefix):
                yield event

    def to_json(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "last_revision": self.last_revision,
            "events": [e.to_json() for e in self._events],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventLog:
        log = cls(data["capacity"])
        log.last_revision = data["last_revision"]
        log._events.extend(WatchEvent.from_json(e) for e in data["events"])
        return log
