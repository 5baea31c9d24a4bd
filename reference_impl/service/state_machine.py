"""The replicated lock state machine: sessions, locks, fencing tokens, watches, dedup.

Deterministic: ``apply`` depends only on the entry's index and bytes and the current state, so
every replica that applies the same log holds the same locks. Every decision that depends on time
arrives as a leader-issued command (see ``commands``). The fencing token of a grant is the Raft
index of the entry that granted it, so tokens strictly increase per lock across failovers and
restarts without any extra counter.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference_impl.service.commands import (
    Acquire,
    CancelWait,
    CloseSession,
    Command,
    CommandError,
    EndLockDelay,
    ExpireSession,
    OpenSession,
    Release,
    decode_command,
)
from reference_impl.service.events import DEFAULT_EVENT_LOG_CAPACITY, EventLog, WatchEvent
from reference_impl.service.outcome import (
    ERR_BAD_REQUEST,
    ERR_CONFLICT,
    ERR_NOT_HOLDER,
    ERR_SESSION_EXPIRED,
    ERR_STALE_REQUEST,
    OK,
    Outcome,
    failed,
)

log = logging.getLogger(__name__)

DEDUP_WINDOW = 256  # results remembered per client; a client has far fewer requests in flight
SNAPSHOT_FORMAT = 1  # bumped when the snapshot layout changes


@dataclass(slots=True)
class Session:
    id: str
    client_id: str
    ttl: float
    opened_wall_time: float
    held: set[str] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Holder:
    token: int
    shared: bool
    value: str = ""


@dataclass(slots=True)
class Waiter:
    session: str
    shared: bool
    value: str = ""


@dataclass(slots=True)
class Lock:
    name: str
    holders: dict[str, Holder] = field(default_factory=dict)
    queue: list[Waiter] = field(default_factory=list)
    delayed: bool = False  # the holder expired and the lock-delay has not ended yet

    @property
    def idle(self) -> bool:
        return not self.holders and not self.queue and not self.delayed

    def compatible(self, shared: bool) -> bool:
        if self.delayed:
            return False
        if not self.holders:
            return True
        return shared and all(h.shared for h in self.holders.values())


@dataclass(frozen=True, slots=True)
class HolderView:
    session: str
    token: int
    shared: bool
    value: str


@dataclass(frozen=True, slots=True)
class OwnerView:
    """Who holds a lock now; ``token`` is the newest holder's token (None when free)."""

    name: str
    holders: tuple[HolderView, ...]
    token: int | None
    waiters: tuple[str, ...]
    delayed: bool


@dataclass(frozen=True, slots=True)
class ServiceStats:
    sessions: int
    locks_held: int
    waiters: int
    last_revision: int


class StateObserver(Protocol):
    """What the server hears while entries apply (to complete blocked requests, feed watches)."""

    def granted(self, session: str, name: str, token: int) -> None: ...

    def wait_ended(self, session: str, name: str, reason: str) -> None: ...

    def session_opened(self, session: str, ttl: float, wall_time: float) -> None: ...

    def session_ended(self, session: str, reason: str) -> None: ...

    def lock_delayed(self, name: str) -> None: ...

    def event(self, event: WatchEvent) -> None: ...


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _ClientRecord:
    """The dedup window of one client: seq -> outcome, plus the highest seq evicted."""

    __slots__ = ("floor", "results")

    def __init__(self) -> None:
        self.results: OrderedDict[int, Outcome] = OrderedDict()
        self.floor = 0


class LockStateMachine:
    """Implements the Replica's StateMachine protocol (apply / snapshot / restore)."""

    def __init__(
        self,
        *,
        event_log_capacity: int = DEFAULT_EVENT_LOG_CAPACITY,
        unsafe_reuse_tokens: bool = False,
    ) -> None:
        self.sessions: dict[str, Session] = {}
        self.locks: dict[str, Lock] = {}
        self.clients: dict[str, _ClientRecord] = {}
        self.events = EventLog(event_log_capacity)
        self.applied_index = 0
        self.observers: list[StateObserver] = []
        # --unsafe-reuse-tokens: tokens from a per-lock counter that lives only in memory (like a
        # server that forgot to persist it): entries replayed at start (index <= replayed_until,
        # set by the server) do not count, so a restarted node counts from 1 again and hands
        # out tokens seen before.
        self.unsafe_reuse_tokens = unsafe_reuse_tokens
        self.replayed_until = 0
        self._volatile_counters: dict[str, int] = {}
        self._client_sessions: dict[str, int] = {}  # client id -> number of live sessions

    # -- StateMachine protocol ----------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Outcome:
        """Apply one committed entry. Never raises: a bad entry is logged and answered as such."""
        if index <= self.applied_index:
            log.warning("entry %d applied twice (applied %d); ignored", index, self.applied_index)
            return failed(ERR_STALE_REQUEST, "entry already applied")
        self.applied_index = index
        if not data:
            return OK
        try:
            command = decode_command(data)
        except CommandError as exc:
            log.error("entry %d: %s", index, exc)
            return failed(ERR_BAD_REQUEST, str(exc))
        return self._apply_command(index, command)

    def snapshot(self) -> bytes:
        # Building ~10^5 small lists would trigger the cyclic GC over and over (each pass walks
        # the whole heap); nothing here creates cycles, so pause it. Same for restore.
        with _gc_paused():
            return self._snapshot()

    def _snapshot(self) -> bytes:
        # Compact, positional JSON: a session's held/waiting sets are derived from the locks and
        # rebuilt on restore; outcomes are tuples. Snapshots of 100,000 locks stay a few MiB.
        body = {
            "format": SNAPSHOT_FORMAT,
            "applied_index": self.applied_index,
            "sessions": [
                [s.id, s.client_id, s.ttl, s.opened_wall_time] for s in self.sessions.values()
            ],
            "locks": [
                [
                    lock.name,
                    [[sid, h.token, h.shared, h.value] for sid, h in lock.holders.items()],
                    [[w.session, w.shared, w.value] for w in lock.queue],
                    lock.delayed,
                ]
                for lock in self.locks.values()
            ],
            "clients": [
                [
                    cid,
                    rec.floor,
                    [
                        [seq, o.status, o.error, o.message, o.token, o.session]
                        for seq, o in rec.results.items()
                    ],
                ]
                for cid, rec in self.clients.items()
            ],
            "events": self.events.to_json(),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def restore(self, data: bytes, index: int) -> None:
        with _gc_paused():
            self._restore(data, index)

    def _restore(self, data: bytes, index: int) -> None:
        body = json.loads(data)
        if body.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {body.get('format')!r} is not {SNAPSHOT_FORMAT}")
        self.applied_index = index
        self.sessions = {
            sid: Session(sid, cid, ttl, wall) for sid, cid, ttl, wall in body["sessions"]
        }
        self.locks = {}
        for name, holders, queue, delayed in body["locks"]:
            lock = Lock(name, {}, [], delayed)
            for sid, token, shared, value in holders:
                lock.holders[sid] = Holder(token, shared, value)
                self.sessions[sid].held.add(name)
            for sid, shared, value in queue:
                lock.queue.append(Waiter(sid, shared, value))
                self.sessions[sid].waiting.add(name)
            self.locks[name] = lock
        self.clients = {}
        for cid, floor, results in body["clients"]:
            rec = _ClientRecord()
            rec.floor = floor
            for seq, status, error, message, token, session in results:
                rec.results[seq] = Outcome(status, error, message, token, session)
            self.clients[cid] = rec
        self.events = EventLog.from_json(body["events"])
        self._volatile_counters = {}
        self._client_sessions = {}
        for session in self.sessions.values():
            count = self._client_sessions.get(session.client_id, 0)
            self._client_sessions[session.client_id] = count + 1

    # -- reads (local state; the server makes them linearizable with ReadIndex) ----------------

    def owner(self, name: str) -> OwnerView:
        lock = self.locks.get(name)
        if lock is None:
            return OwnerView(name, (), None, (), False)
        holders = tuple(
            HolderView(sid, h.token, h.shared, h.value) for sid, h in lock.holders.items()
        )
        token = max((h.token for h in holders), default=None)
        return OwnerView(name, holders, token, tuple(w.session for w in lock.queue), lock.delayed)

    def check_token(self, name: str, token: int) -> bool:
        """Chubby's CheckSequencer: is ``token`` a current holder's token of ``name``?"""
        lock = self.locks.get(name)
        return lock is not None and any(h.token == token for h in lock.holders.values())

    def watch_backlog(self, prefix: str, from_revision: int) -> Iterator[WatchEvent]:
        return self.events.since(from_revision, prefix)

    def stats(self) -> ServiceStats:
        return ServiceStats(
            sessions=len(self.sessions),
            locks_held=sum(1 for lock in self.locks.values() if lock.holders),
            waiters=sum(len(lock.queue) for lock in self.locks.values()),
            last_revision=self.events.last_revision,
        )

    # -- commands -----------------------------------------------------------------------------

    def _apply_command(self, index: int, command: Command) -> Outcome:
        if isinstance(command, ExpireSession):
            return self._end_session(index, command.session, "expired", command.lock_delay)
        if isinstance(command, CancelWait):
            return self._cancel_wait(index, command)
        if isinstance(command, EndLockDelay):
            return self._end_lock_delay(index, command)
        record = self.clients.get(command.client_id)
        if record is not None:
            cached = record.results.get(command.seq)
            if cached is not None:
                return cached
            if command.seq <= record.floor:
                return failed(ERR_STALE_REQUEST, f"request {command.seq} is older than the window")
        outcome = self._apply_client_command(index, command)
        self._remember(command.client_id, command.seq, outcome)
        return outcome

    def _remember(self, client_id: str, seq: int, outcome: Outcome) -> None:
        if not self._client_sessions.get(client_id):
            # The client has no live session (a failed open, or its last session closed): keep
            # no state for it, so dead clients do not accumulate.
            self.clients.pop(client_id, None)
            return
        record = self.clients.get(client_id)
        if record is None:  # not setdefault: that builds a record (an OrderedDict) every time
            record = self.clients[client_id] = _ClientRecord()
        record.results[seq] = outcome
        while len(record.results) > DEDUP_WINDOW:
            evicted, _ = record.results.popitem(last=False)
            record.floor = max(record.floor, evicted)

    def _apply_client_command(
        self, index: int, command: OpenSession | CloseSession | Acquire | Release
    ) -> Outcome:
        if isinstance(command, OpenSession):
            session_id = f"s{index}"
            self.sessions[session_id] = Session(
                session_id, command.client_id, command.ttl, command.wall_time
            )
            self._client_sessions[command.client_id] = (
                self._client_sessions.get(command.client_id, 0) + 1
            )
            for observer in self.observers:
                observer.session_opened(session_id, command.ttl, command.wall_time)
            return Outcome("ok", session=session_id)
        session = self.sessions.get(command.session)
        if session is None:
            return failed(ERR_SESSION_EXPIRED, f"session {command.session} does not exist")
        if isinstance(command, CloseSession):
            return self._end_session(index, session.id, "closed", 0.0)
        if isinstance(command, Acquire):
            return self._acquire(index, session, command)
        return self._release(index, session, command.name)

    def _acquire(self, index: int, session: Session, command: Acquire) -> Outcome:
        lock = self.locks.get(command.name)
        if lock is None:
            lock = self.locks[command.name] = Lock(command.name)
        held = lock.holders.get(session.id)
        if held is not None:
            if held.shared != command.shared:
                mode = "shared" if held.shared else "exclusive"
                return failed(ERR_CONFLICT, f"{command.name} is already held {mode} by you")
            return Outcome("ok", token=held.token, session=session.id)
        if command.name in session.waiting:
            return Outcome("queued", session=session.id)
        if not lock.queue and lock.compatible(command.shared):
            token = self._grant(index, lock, session, command.shared, command.value)
            return Outcome("ok", token=token, session=session.id)
        if not command.wait:
            if lock.idle:
                del self.locks[command.name]
            return Outcome("busy", session=session.id)
        lock.queue.append(Waiter(session.id, command.shared, command.value))
        session.waiting.add(command.name)
        return Outcome("queued", session=session.id)

    def _release(self, index: int, session: Session, name: str) -> Outcome:
        lock = self.locks.get(name)
        if lock is None or session.id not in lock.holders:
            if lock is not None and name in session.waiting:
                self._remove_waiter(lock, session, "withdrawn")
                self._grant_queue(index, lock)
                self._drop_if_idle(lock)
                return Outcome("ok", message="withdrawn from the queue")
            return failed(ERR_NOT_HOLDER, f"session {session.id} does not hold {name}")
        holder = lock.holders.pop(session.id)
        session.held.discard(name)
        self._event("released", name, session.id, holder.token)
        self._grant_queue(index, lock)
        self._drop_if_idle(lock)
        return OK

    def _end_session(self, index: int, session_id: str, reason: str, lock_delay: float) -> Outcome:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return OK  # already gone: expiry and close may race, both are fine
        kind = "expired" if reason == "expired" else "released"
        for name in sorted(session.waiting):
            lock = self.locks[name]
            self._remove_waiter(lock, session, reason)
        touched = set(session.waiting)
        for name in sorted(session.held):
            lock = self.locks[name]
            holder = lock.holders.pop(session.id)
            self._event(kind, name, session.id, holder.token)
            if reason == "expired" and lock_delay > 0 and not lock.holders:
                lock.delayed = True
                for observer in self.observers:
                    observer.lock_delayed(name)
            touched.add(name)
        session.held.clear()
        session.waiting.clear()
        for name in sorted(touched):
            lock = self.locks[name]
            self._grant_queue(index, lock)
            self._drop_if_idle(lock)
        remaining = self._client_sessions.pop(session.client_id, 1) - 1
        if remaining > 0:
            self._client_sessions[session.client_id] = remaining
        else:
            self.clients.pop(session.client_id, None)
        for observer in self.observers:
            observer.session_ended(session.id, reason)
        return OK

    def _cancel_wait(self, index: int, command: CancelWait) -> Outcome:
        session = self.sessions.get(command.session)
        lock = self.locks.get(command.name)
        if session is None or lock is None or command.name not in session.waiting:
            return Outcome("ok", message="not waiting")  # granted (or gone) before the timeout
        self._remove_waiter(lock, session, "timeout")
        self._grant_queue(index, lock)
        self._drop_if_idle(lock)
        return Outcome("ok", message="cancelled")

    def _end_lock_delay(self, index: int, command: EndLockDelay) -> Outcome:
        lock = self.locks.get(command.name)
        if lock is None or not lock.delayed:
            return OK
        lock.delayed = False
        self._grant_queue(index, lock)
        self._drop_if_idle(lock)
        return OK

    # -- helpers ------------------------------------------------------------------------------

    def _grant(self, index: int, lock: Lock, session: Session, shared: bool, value: str) -> int:
        if self.unsafe_reuse_tokens:
            token = self._volatile_counters.get(lock.name, 0) + 1
            if index > self.replayed_until:
                self._volatile_counters[lock.name] = token
        else:
            token = index
        lock.holders[session.id] = Holder(token, shared, value)
        session.held.add(lock.name)
        self._event("acquired", lock.name, session.id, token)
        return token

    def _grant_queue(self, index: int, lock: Lock) -> None:
        """Grant waiters from the head of the FIFO queue while they are compatible."""
        while lock.queue and lock.compatible(lock.queue[0].shared):
            waiter = lock.queue.pop(0)
            session = self.sessions[waiter.session]
            session.waiting.discard(lock.name)
            token = self._grant(index, lock, session, waiter.shared, waiter.value)
            for observer in self.observers:
                observer.granted(session.id, lock.name, token)

    def _remove_waiter(self, lock: Lock, session: Session, reason: str) -> None:
        lock.queue = [w for w in lock.queue if w.session != session.id]
        session.waiting.discard(lock.name)
        for observer in self.observers:
            observer.wait_ended(session.id, lock.name, reason)

    def _drop_if_idle(self, lock: Lock) -> None:
        if lock.idle:
            del self.locks[lock.name]

    def _event(self, kind: Any, name: str, session: str | None, token: int | None) -> None:
        event = self.events.append(kind, name, session, token)
        for observer in self.observers:
            observer.event(event)
