"""The watch hub: open watches on this node and the events each is owed.

Entries apply in log order and every applied lock change is a watch event with a revision; the
hub hands each event to the watches whose prefix it matches, in that order, and remembers per
watch the next revision it owes, so a watch that (re)starts from a revision, or catches up after
a snapshot restore, gets every event exactly once, or is told its revision was compacted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from reference_impl.server.request_failed import RequestFailed
from reference_impl.service.events import RevisionCompacted, WatchEvent
from reference_impl.service.protocol import E_COMPACTED
from reference_impl.service.state_machine import LockStateMachine

Send = Callable[[WatchEvent | None, RequestFailed | None], None]


@dataclass(slots=True)
class Subscriber:
    """One watch: events under ``prefix`` go to ``send``; ``next_revision`` is the next owed."""

    prefix: str
    send: Send
    next_revision: int


class WatchHub:
    """Delivers the state machine's watch events to this node's open watches."""

    def __init__(self, machine: LockStateMachine) -> None:
        self.machine = machine
        self.subscribers: list[Subscriber] = []

    def subscribe(self, prefix: str, from_revision: int, send: Send) -> tuple[Subscriber, int]:
        """Register a watch and replay its backlog; returns it and the current revision.

        Synchronous on purpose: no entry can apply between the backlog and the registration.
        """
        current = self.machine.events.last_revision
        start = from_revision if from_revision > 0 else current + 1
        try:
            backlog = list(self.machine.watch_backlog(prefix, start))
        except RevisionCompacted as exc:
            raise RequestFailed(E_COMPACTED, str(exc)) from exc
        subscriber = Subscriber(prefix, send, max(start, current + 1))
        for event in backlog:
            send(event, None)
        self.subscribers.append(subscriber)
        return subscriber, current

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(subscriber)

    def deliver(self, event: WatchEvent) -> None:
        """An event just applied: to every watch of its prefix that does not have it yet."""
        for subscriber in list(self.subscribers):
            if event.revision < subscriber.next_revision:
                continue
            if event.name.startswith(subscriber.prefix):
                subscriber.send(event, None)
            subscriber.next_revision = event.revision + 1

    def catch_up_all(self) -> None:
        """After a snapshot restore, deliver what each watch missed (or say it is gone)."""
        for subscriber in list(self.subscribers):
            self._catch_up(subscriber)

    def _catch_up(self, subscriber: Subscriber) -> None:
        try:
            events = list(self.machine.watch_backlog(subscriber.prefix, subscriber.next_revision))
        except RevisionCompacted as exc:
            self.unsubscribe(subscriber)
            subscriber.send(None, RequestFailed(E_COMPACTED, str(exc)))
            return
        for event in events:
            subscriber.send(event, None)
        subscriber.next_revision = self.machine.events.last_revision + 1
