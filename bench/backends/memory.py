"""An in-process lock service: real lock semantics, no nodes, no network.

It exists so the runner can be tested and benchmarked quickly and without root: sessions with a
TTL and keepalives, exclusive and shared locks with FIFO wait queues, fencing tokens that strictly
increase, and an ordered, resumable watch log. Everything lives in the bench's event loop, so the
"cluster" is the bench process itself (runtime ``none``) and node faults are not available.

``unsafe: [no-exclusion]`` makes every acquire succeed at once: a deliberately broken service, so
the checkers can be seen to catch a mutual-exclusion violation end to end.

``lost_replies`` and ``stuck_replies`` (fractions of client calls, seeded) are the in-process
stand-in for a network that loses answers: the call takes effect on the service, then the client
either gets ``Indeterminate`` at once or never hears back (the runner's per-op timeout fires).
Both must be recorded as ``info``; they exercise the runner's process-retirement rule and the
checkers' handling of unknown outcomes without a cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockbench.errors import ClusterError, ConfigError
from lockbench.protocols import (
    Cluster,
    DefiniteFailure,
    Grant,
    Indeterminate,
    LockEvent,
    Node,
    OwnerInfo,
)

log = logging.getLogger(__name__)

# How many watch events the service keeps for resuming watchers (like etcd's compaction window).
EVENT_LOG_LIMIT = 100_000
# How often expired sessions are reaped; a fraction of any sensible TTL.
REAP_INTERVAL_S = 0.05
UNSAFE_SWITCHES = frozenset({"no-exclusion"})

EventKind = Literal["acquired", "released", "expired"]


class SessionExpired(Indeterminate):
    """The session's TTL ran out; the service released its locks.

    Unknown (``info``), not ``fail``: the locks went away at a time the client cannot know, so
    the process must be treated as crashed (retired), exactly as the checkers model a holder
    whose outcome is unknown.
    """


class NotHolder(DefiniteFailure):
    """A release of a lock the session does not hold."""


class AcquireTimeout(DefiniteFailure):
    """The acquire waited in the queue for its whole timeout; the waiter was removed."""


class WatchCompacted(DefiniteFailure):
    """A watch asked to resume from a revision the service no longer keeps."""


@dataclass(frozen=True, slots=True)
class ReplyFaults:
    """Fractions of calls whose reply is lost (Indeterminate) or never comes (hangs)."""

    lost: float = 0.0
    stuck: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in (("lost_replies", self.lost), ("stuck_replies", self.stuck)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"backend_options.{name}: must be within [0, 1], got {value}")
        if self.lost + self.stuck > 1.0:
            raise ConfigError("backend_options: lost_replies + stuck_replies must not exceed 1")

    @property
    def active(self) -> bool:
        return self.lost > 0 or self.stuck > 0


@dataclass(slots=True)
class _Session:
    id: str
    ttl: float
    deadline: float
    alive: bool = True
    held: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Waiter:
    session: str
    shared: bool
    granted: asyncio.Future[int]


@dataclass(slots=True)
class _Lock:
    holders: dict[str, int] = field(default_factory=dict)  # session -> token
    shared: bool = False
    queue: deque[_Waiter] = field(default_factory=deque)


class MemoryLockService:
    """The lock table. Single-threaded: call it only from the event loop that created it."""

    def __init__(self, *, unsafe: frozenset[str] = frozenset()) -> None:
        self._sessions: dict[str, _Session] = {}
        self._locks: dict[str, _Lock] = {}
        self._session_ids = itertools.count(1)
        self._next_token = 1
        self._revision = 0
        self._events: deque[LockEvent] = deque(maxlen=EVENT_LOG_LIMIT)
        self._watchers: set[asyncio.Queue[LockEvent]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.unsafe = unsafe

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, ttl: float) -> str:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        session = _Session(f"s{next(self._session_ids)}", ttl, time.monotonic() + ttl)
        self._sessions[session.id] = session
        return session.id

    def keepalive(self, session_id: str) -> None:
        session = self._live_session(session_id)
        session.deadline = time.monotonic() + session.ttl

    def close_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None and session.alive:
            self._end_session(session, "released")

    def is_alive(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and session.alive

    def _live_session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None or not session.alive:
            raise SessionExpired(f"session {session_id} expired; its locks were released")
        return session

    async def _reap_forever(self) -> None:
        while self._sessions:
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if session.alive and session.deadline <= now:
                    log.debug("session %s expired", session.id)
                    self._end_session(session, "expired")
            await asyncio.sleep(REAP_INTERVAL_S)

    def _end_session(self, session: _Session, kind: EventKind) -> None:
        session.alive = False
        for name in sorted(session.held):
            self._drop_holder(name, session.id, kind)
        session.held.clear()
        for lock in self._locks.values():
            for waiter in [w for w in lock.queue if w.session == session.id]:
                lock.queue.remove(waiter)
                if not waiter.granted.done():
                    waiter.granted.set_exception(
                        SessionExpired(f"session {session.id} ended while waiting")
                    )

    def shutdown(self) -> None:
        """End every session (the service 'stops'): waiters fail, holders are released."""
        for session in list(self._sessions.values()):
            self.close_session(session.id)
        if self._reaper is not None:
            self._reaper.cancel()

    # -- locks -----------------------------------------------------------------------------

    async def acquire(self, session_id: str, name: str, *, timeout: float, shared: bool) -> int:
        session = self._live_session(session_id)
        lock = self._locks.setdefault(name, _Lock())
        if session_id in lock.holders:
            return lock.holders[session_id]  # idempotent re-acquire
        if "no-exclusion" in self.unsafe or self._grantable(lock, shared):
            return self._grant(lock, name, session, shared)
        waiter = _Waiter(session_id, shared, asyncio.get_running_loop().create_future())
        lock.queue.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter.granted)
        except TimeoutError:
            granted = waiter.granted
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                return granted.result()  # granted in the same instant: keep it
            self._remove_waiter(lock, waiter)
            raise AcquireTimeout(f"{name}: not granted within {timeout:g}s") from None
        except asyncio.CancelledError:
            # The caller gave up (per-op timeout): leave the queue. A grant that already
            # happened stands; the runner records this op as unknown.
            self._remove_waiter(lock, waiter)
            raise

    def _remove_waiter(self, lock: _Lock, waiter: _Waiter) -> None:
        if waiter in lock.queue:
            lock.queue.remove(waiter)
            if not waiter.granted.done():
                waiter.granted.cancel()

    @staticmethod
    def _grantable(lock: _Lock, shared: bool) -> bool:
        if lock.queue:
            return False
        if not lock.holders:
            return True
        return shared and lock.shared

    def _grant(self, lock: _Lock, name: str, session: _Session, shared: bool) -> int:
        token = self._next_token
        self._next_token += 1
        lock.holders[session.id] = token
        lock.shared = shared
        session.held.add(name)
        self._publish("acquired", name, session.id, token)
        return token

    def release(self, session_id: str, name: str) -> None:
        session = self._live_session(session_id)
        lock = self._locks.get(name)
        if lock is None or session_id not in lock.holders:
            raise NotHolder(f"{name}: session {session_id} does not hold it")
        session.held.discard(name)
        self._drop_holder(name, session_id, "released")

    def _drop_holder(self, name: str, session_id: str, kind: EventKind) -> None:
        lock = self._locks[name]
        token = lock.holders.pop(session_id)
        self._publish(kind, name, session_id, token)
        self._hand_over(lock, name)

    def _hand_over(self, lock: _Lock, name: str) -> None:
        """Grant waiters at the head of the FIFO queue: one writer or a run of readers."""
        while lock.queue:
            head = lock.queue[0]
            if head.granted.done():  # cancelled while queued
                lock.queue.popleft()
                continue
            if lock.holders and not (head.shared and lock.shared):
                return
            lock.queue.popleft()
            session = self._sessions.get(head.session)
            if session is None or not session.alive:
                continue
            head.granted.set_result(self._grant(lock, name, session, head.shared))
            if not head.shared:
                return

    def owner(self, name: str) -> OwnerInfo:
        lock = self._locks.get(name)
        if lock is None or not lock.holders:
            return OwnerInfo(name, (), None)
        return OwnerInfo(name, tuple(lock.holders), max(lock.holders.values()))

    # -- watches ---------------------------------------------------------------------------

    def _publish(self, kind: EventKind, name: str, session: str, token: int) -> None:
        self._revision += 1
        event = LockEvent(self._revision, kind, name, session, token)
        self._events.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[LockEvent]:
        """Events for locks under ``prefix`` with revision >= from_revision (0: from now)."""
        queue: asyncio.Queue[LockEvent] = asyncio.Queue()
        self._watchers.add(queue)  # subscribe before reading the backlog: nothing is missed
        try:
            last = self._revision
            if from_revision > 0:
                oldest = self._events[0].revision if self._events else self._revision + 1
                if from_revision < oldest and from_revision <= self._revision:
                    raise WatchCompacted(
                        f"revision {from_revision} was compacted (oldest kept: {oldest})"
                    )
                backlog = [e for e in self._events if e.revision >= from_revision]
                for event in backlog:
                    if event.lock.startswith(prefix):
                        yield event
                last = max(last, backlog[-1].revision if backlog else last)
            while True:
                event = await queue.get()
                if event.revision > last and event.lock.startswith(prefix):
                    yield event
        finally:
            self._watchers.discard(queue)


class MemoryLockClient:
    """One process's session with the in-process service; keepalives run in the background.

    It tracks its lease as the reference client does (``lease_deadline``): past the deadline the
    session counts as lost even before the service reaps it."""

    def __init__(
        self,
        service: MemoryLockService,
        *,
        ttl: float,
        process: int,
        faults: ReplyFaults = ReplyFaults(),
    ) -> None:
        self._service = service
        self._ttl = ttl
        self.process = process
        self._faults = faults
        self._rng = random.Random(f"{faults.seed}:{process}") if faults.active else None
        self._safe_deadline = time.monotonic() + ttl
        self._session = service.open_session(ttl)
        self._keepalive: asyncio.Task[None] | None = None
        self._start_keepalive()

    @property
    def session(self) -> str | None:
        return self._session

    def _start_keepalive(self) -> None:
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        # Like the reference client: once the lease lapsed the session counts as lost, even if
        # the service has not reaped it yet, so a late keepalive never revives it.
        while self._service.is_alive(self._session) and not self._lease_lapsed():
            sent = time.monotonic()
            self._service.keepalive(self._session)
            self._safe_deadline = sent + self._ttl
            await asyncio.sleep(self._ttl / 3)

    def lease_deadline(self) -> float | None:
        """Since when the service may have expired the session, once that moment has passed.

        The service sets a session's deadline to its own clock + TTL on each keepalive, on the
        same clock as the client, so the client's send time + TTL is never later than it.
        """
        deadline = self._safe_deadline
        return deadline if time.monotonic() >= deadline else None

    def _lease_lapsed(self) -> bool:
        return time.monotonic() >= self._safe_deadline

    def _ensure_session(self) -> None:
        """After an expiry the next acquire runs in a fresh session (as a real client would).

        A lapsed lease is given up even if the service has not reaped it yet: ending it frees
        its locks at once, as the reference client's close does."""
        if self._lease_lapsed() or not self._service.is_alive(self._session):
            self._service.close_session(self._session)
            self._safe_deadline = time.monotonic() + self._ttl
            self._session = self._service.open_session(self._ttl)
            if self._keepalive is not None:
                self._keepalive.cancel()
            self._start_keepalive()

    async def _reply(self, what: str) -> None:
        """After the call took effect: maybe lose or withhold its reply (see module docstring)."""
        if self._rng is None:
            return
        draw = self._rng.random()
        if draw < self._faults.lost:
            raise Indeterminate(f"{what}: reply lost (memory backend lost_replies)")
        if draw < self._faults.lost + self._faults.stuck:
            await asyncio.Event().wait()  # never set: the caller's per-op timeout ends this

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant:
        self._ensure_session()
        token = await self._service.acquire(self._session, lock, timeout=timeout, shared=shared)
        await self._reply(f"acquire {lock}")
        return Grant(lock, token, self._session)

    async def release(self, lock: str) -> None:
        if self._lease_lapsed():
            # As the reference client: the session may already be gone on the service, so
            # whether the lock is still held is unknown.
            raise SessionExpired(f"session {self._session}: its lease lapsed; {lock} unknown")
        self._service.release(self._session, lock)
        await self._reply(f"release {lock}")

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo:
        info = self._service.owner(lock)
        await self._reply(f"owner {lock}")
        return info

    def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]:
        return self._service.watch(prefix, from_revision)

    async def stall(self, seconds: float) -> None:
        """Stop heartbeats for ``seconds`` (a simulated GC pause), then resume them."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        await asyncio.sleep(seconds)
        if self._service.is_alive(self._session) and not self._lease_lapsed():
            self._start_keepalive()

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._service.close_session(self._session)


class MemoryBackend:
    """Backend for the in-process service. Its single node is the bench's own host."""

    name = "memory"
    runtimes = ("none",)

    def __init__(self, *, unsafe: Sequence[str] = (), faults: ReplyFaults = ReplyFaults()) -> None:
        unknown = sorted(set(unsafe) - UNSAFE_SWITCHES)
        if unknown:
            raise ConfigError(
                f"backend_options.unsafe: unknown switch(es) {unknown}; "
                f"known: {sorted(UNSAFE_SWITCHES)}"
            )
        self.unsafe = frozenset(unsafe)
        self.faults = faults
        self._service: MemoryLockService | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MemoryBackend:
        """Options: ``unsafe`` (list), ``lost_replies``, ``stuck_replies`` (0..1), ``seed``."""
        known = {"unsafe", "lost_replies", "stuck_replies", "seed"}
        extra = sorted(set(options) - known)
        if extra:
            raise ConfigError(
                f"backend_options.{extra[0]}: unknown option (known: {', '.join(sorted(known))})"
            )
        unsafe = options.get("unsafe", [])
        if not isinstance(unsafe, list) or not all(isinstance(u, str) for u in unsafe):
            raise ConfigError("backend_options.unsafe: must be a list of switch names")
        numbers = {}
        for name in ("lost_replies", "stuck_replies"):
            value = options.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"backend_options.{name}: expected a number, got {value!r}")
            numbers[name] = float(value)
        seed = options.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"backend_options.seed: expected an integer, got {seed!r}")
        faults = ReplyFaults(numbers["lost_replies"], numbers["stuck_replies"], seed)
        return cls(unsafe=unsafe, faults=faults)

    @property
    def service(self) -> MemoryLockService:
        if self._service is None:
            self._service = MemoryLockService(unsafe=self.unsafe)
        return self._service

    def deploy(self, cluster: Cluster) -> None:
        """Nothing to install: the service is part of the bench."""

    def start(self, node: Node) -> None:
        """The service starts with the first session (it needs the running event loop)."""

    def stop(self, node: Node) -> None:
        if self._service is not None:
            self._service.shutdown()
            self._service = None

    def kill(self, node: Node) -> None:
        raise ClusterError("memory backend: the service runs inside the bench; it cannot be killed")

    def pause(self, node: Node) -> None:
        raise ClusterError("memory backend: the service runs inside the bench; it cannot pause")

    def resume(self, node: Node) -> None:
        raise ClusterError("memory backend: the service runs inside the bench; nothing to resume")

    def wipe(self, node: Node) -> None:
        self.stop(node)

    def leader(self, cluster: Cluster) -> str | None:
        return None

    def log_files(self, node: Node) -> Sequence[str]:
        return ()

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> MemoryLockClient:
        return MemoryLockClient(self.service, ttl=ttl, process=process, faults=self.faults)
