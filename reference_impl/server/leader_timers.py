"""The leader's timers: session expiry, try-acquire timeouts and lock-delays.

Only the leader keeps time for the service, on its monotonic clock: a session whose keepalives
stop expires after its TTL, a queued acquire with a timeout is cancelled when it runs out, and a
lock released by an expiry stays unavailable for the lock-delay. Each decision is proposed as a
log entry (ExpireSession, CancelWait, EndLockDelay), so replicas never disagree about time. A
node that becomes leader gives every live session a fresh TTL (it cannot know when the old leader
last heard from them); one that loses leadership drops its timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from reference_impl.raft.errors import RaftError
from reference_impl.server.config import ServerConfig
from reference_impl.server.metrics import Counter
from reference_impl.server.replica_like import ReplicaLike
from reference_impl.service.commands import (
    CancelWait,
    Command,
    EndLockDelay,
    ExpireSession,
    encode_command,
)
from reference_impl.service.state_machine import LockStateMachine

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # per proposal; the next scan proposes again if it was not committed
EXPIRY_SCAN_SECONDS = 0.1

WaitKey = tuple[str, str]  # (session, lock name)


class LeaderTimers:
    """Session deadlines and the leader's timer tasks; ``leading`` says whether they run."""

    def __init__(
        self,
        config: ServerConfig,
        machine: LockStateMachine,
        clock: Callable[[], float],
        *,
        wallclock_expiry: bool,
        expiries: Counter,
    ) -> None:
        self.config = config
        self.machine = machine
        self.clock = clock
        self.wallclock_expiry = wallclock_expiry
        self.expiries = expiries
        self.replica: ReplicaLike | None = None
        self.leading = False
        self.deadlines: dict[str, float] = {}
        self.expiring: set[str] = set()
        self.cancel_timers: dict[WaitKey, asyncio.Task[None]] = {}
        self.delay_timers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._expiry_task = asyncio.get_running_loop().create_task(self._expiry_loop())

    async def stop(self) -> None:
        tasks = [*self._tasks, *self.cancel_timers.values(), *self.delay_timers.values()]
        if self._expiry_task is not None:
            tasks.append(self._expiry_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background proposal; stop() cancels it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- session deadlines --------------------------------------------------------------------

    def session_opened(self, session: str, ttl: float, wall_time: float) -> None:
        base = wall_time if self.wallclock_expiry else self.clock()
        self.deadlines[session] = base + ttl

    def session_ended(self, session: str) -> None:
        self.deadlines.pop(session, None)
        self.expiring.discard(session)

    def renew(self, session: str, ttl: float) -> None:
        """A keepalive reached the leader: the session lives ``ttl`` more seconds."""
        self.deadlines[session] = self.clock() + ttl

    def is_expiring(self, session: str) -> bool:
        return session in self.expiring

    def restored(self) -> None:
        """After a snapshot restore: a deadline for every session of the restored state."""
        now = self.clock()
        self.deadlines = {}
        for session in self.machine.sessions.values():
            base = session.opened_wall_time if self.wallclock_expiry else now
            self.deadlines[session.id] = base + session.ttl

    # -- leadership ---------------------------------------------------------------------------

    def became_leader(self, term: int) -> None:
        self.leading = True
        log.info("leader in term %d: fresh TTL for %d sessions", term, len(self.deadlines))
        if not self.wallclock_expiry:
            now = self.clock()
            for session in self.machine.sessions.values():
                self.deadlines[session.id] = now + session.ttl
        self.expiring.clear()
        for lock in self.machine.locks.values():
            if lock.delayed:
                self.arm_lock_delay(lock.name)

    def lost_leadership(self) -> None:
        self.leading = False
        for task in [*self.cancel_timers.values(), *self.delay_timers.values()]:
            task.cancel()
        self.cancel_timers.clear()
        self.delay_timers.clear()

    # -- timers -------------------------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SCAN_SECONDS)
            if not self.leading or self.replica is None or not self.replica.is_leader:
                continue
            now = self.clock()
            for session, deadline in list(self.deadlines.items()):
                if deadline <= now and session not in self.expiring:
                    self.expiring.add(session)
                    self.expiries.inc()
                    lock_delay = self.config.lock_delay_ms / 1000.0
                    self.spawn(self.propose_quietly(ExpireSession(session, lock_delay), session))

    async def propose_quietly(self, command: Command, expiring: str | None = None) -> None:
        """Propose a leader-issued entry; a failure is logged (the next scan tries again)."""
        replica = self.replica
        if replica is None:
            return
        try:
            await replica.propose(encode_command(command), timeout=REQUEST_TIMEOUT)
        except RaftError as exc:
            log.info("leader-issued %s not committed: %s", type(command).__name__, exc)
            if expiring is not None:
                self.expiring.discard(expiring)

    def arm_lock_delay(self, name: str) -> None:
        if name in self.delay_timers:
            return

        async def end_delay() -> None:
            try:
                await asyncio.sleep(self.config.lock_delay_ms / 1000.0)
                await self.propose_quietly(EndLockDelay(name))
            finally:
                self.delay_timers.pop(name, None)

        self.delay_timers[name] = asyncio.get_running_loop().create_task(end_delay())

    def arm_cancel(self, key: WaitKey, timeout: float) -> None:
        """Cancel a queued acquire when its timeout runs out (a CancelWait entry)."""
        if key in self.cancel_timers:
            return

        async def cancel() -> None:
            try:
                await asyncio.sleep(timeout)
                await self.propose_quietly(CancelWait(*key))
            finally:
                self.cancel_timers.pop(key, None)

        self.cancel_timers[key] = asyncio.get_running_loop().create_task(cancel())

    def disarm_cancel(self, key: WaitKey) -> None:
        """The wait ended (granted, refused, gone): its cancel timer has nothing left to do."""
        timer = self.cancel_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
