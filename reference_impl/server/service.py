"""The lock service on one node: client requests in, Raft proposals and reads out.

``LockService`` sits between the client connections and the Replica. It is the Replica's state
machine (it wraps ``LockStateMachine`` so it hears every apply and restore) and it serves client
requests. Two roles are their own classes: the leader's timers (session expiry, try-acquire
timeouts, lock-delays; reference_impl/server/leader_timers.py) and the watch hub (open watches and
the events they are owed; reference_impl/server/watch_hub.py).

Writes are served by the leader only; followers answer ``not-leader`` with the leader's client
address (redirect, docs/protocol.md). Reads (owner, check_token) are served by any node after a
ReadIndex round (``Replica.linearizable_read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference_impl.raft.errors import (
    NotLeader,
    ProposalDropped,
    ProposalTimeout,
    RaftError,
    ReadIndexTimeout,
)
from reference_impl.server.config import ServerConfig
from reference_impl.server.leader_timers import LeaderTimers
from reference_impl.server.metrics import Registry
from reference_impl.server.replica_like import ReplicaLike
from reference_impl.server.request_failed import RequestFailed
from reference_impl.server.watch_hub import Subscriber, WatchHub
from reference_impl.service.commands import (
    Acquire,
    CloseSession,
    Command,
    OpenSession,
    Release,
    encode_command,
)
from reference_impl.service.events import WatchEvent
from reference_impl.service.outcome import Outcome
from reference_impl.service.protocol import (
    E_ACQUIRE_TIMEOUT,
    E_BAD_REQUEST,
    E_NOT_LEADER,
    E_SESSION_EXPIRED,
    E_TIMEOUT,
    E_UNAVAILABLE,
    Request,
)
from reference_impl.service.state_machine import LockStateMachine

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # per proposal / read; the client retries elsewhere after it


class LockService:
    """Serves client requests on one node; the Replica's state machine (and its observer)."""

    def __init__(self, config: ServerConfig, registry: Registry) -> None:
        self.config = config
        self.machine = LockStateMachine(
            event_log_capacity=config.event_log_capacity,
            unsafe_reuse_tokens=config.is_unsafe("reuse-tokens"),
        )
        self.machine.observers.append(self)
        self.replica: ReplicaLike | None = None
        wallclock_expiry = config.is_unsafe("wallclock-expiry")
        clock: Callable[[], float] = time.time if wallclock_expiry else time.monotonic
        self.waiters: dict[tuple[str, str], asyncio.Future[int]] = {}
        self.watches = WatchHub(self.machine)
        self._define_metrics(registry)
        self.timers = LeaderTimers(
            config, self.machine, clock, wallclock_expiry=wallclock_expiry, expiries=self.expiries
        )

    def _define_metrics(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "lockd_requests_total", "Client requests by op and result code.", ("op", "result")
        )
        self.acquire_seconds = registry.histogram(
            "lockd_acquire_seconds", "Time from an acquire request to its grant (uncontended)."
        )
        self.expiries = registry.counter(
            "lockd_session_expiries_total", "Expiry entries this node proposed as leader."
        )
        self.leader_changes = registry.counter(
            "lockd_leader_changes_total", "Leader changes this node observed."
        )
        stats = self.machine.stats
        gauge = registry.gauge
        gauge("lockd_sessions", "Live sessions.", lambda: stats().sessions)
        gauge("lockd_locks_held", "Locks with a holder.", lambda: stats().locks_held)
        gauge("lockd_waiters", "Queued acquire requests.", lambda: stats().waiters)
        gauge("lockd_watchers", "Open watches on this node.", lambda: len(self.watches.subscribers))
        gauge("lockd_watch_revision", "Newest watch revision.", lambda: stats().last_revision)

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, replica: ReplicaLike) -> None:
        self.replica = replica
        self.timers.replica = replica

    async def start(self) -> None:
        self.timers.start()

    async def stop(self) -> None:
        await self.timers.stop()
        self._fail_waiters(RequestFailed(E_UNAVAILABLE, "the server is shutting down"))

    # -- the Replica's StateMachine -----------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Outcome:
        return self.machine.apply(index, data)

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    def restore(self, data: bytes, index: int) -> None:
        self.machine.restore(data, index)
        self.timers.restored()
        # Waiters whose state vanished with the restore are told to retry; watches catch up.
        for key in list(self.waiters):
            session_id, name = key
            waiting = self.machine.sessions.get(session_id)
            if waiting is None or name not in waiting.waiting:
                self._resolve_waiter(key, error=RequestFailed(E_TIMEOUT, "state restored; retry"))
        self.watches.catch_up_all()

    # -- StateObserver (called while entries apply; never blocks) ------------------------------

    def granted(self, session: str, name: str, token: int) -> None:
        self._resolve_waiter((session, name), token=token)

    def wait_ended(self, session: str, name: str, reason: str) -> None:
        if reason == "timeout":
            error = RequestFailed(E_ACQUIRE_TIMEOUT, f"{name}: timed out in the queue")
        elif reason == "withdrawn":
            error = RequestFailed(E_ACQUIRE_TIMEOUT, f"{name}: the session withdrew the request")
        else:
            error = RequestFailed(E_SESSION_EXPIRED, f"session {session} {reason}")
        self._resolve_waiter((session, name), error=error)

    def session_opened(self, session: str, ttl: float, wall_time: float) -> None:
        self.timers.session_opened(session, ttl, wall_time)

    def session_ended(self, session: str, reason: str) -> None:
        self.timers.session_ended(session)

    def lock_delayed(self, name: str) -> None:
        if self.timers.leading:
            self.timers.arm_lock_delay(name)

    def event(self, event: WatchEvent) -> None:
        self.watches.deliver(event)

    # -- leadership ---------------------------------------------------------------------------

    def leader_changed(self, leader: str | None, term: int) -> None:
        """Called by the Replica whenever the known leader changes."""
        self.leader_changes.inc()
        was_leading = self.timers.leading
        leading = leader == self.config.id
        if leading and not was_leading:
            self.timers.became_leader(term)
        elif was_leading and not leading:
            hint = self.leader_endpoint(leader)
            self._fail_waiters(
                RequestFailed(E_NOT_LEADER, "leadership moved; retry on the leader", leader=hint)
            )
            self.timers.lost_leadership()

    def leader_endpoint(self, leader: str | None = None) -> str | None:
        if leader is None and self.replica is not None:
            leader = self.replica.leader_id
        member = self.config.members.get(leader) if leader else None
        return member.client_endpoint if member else None

    def _require_replica(self) -> ReplicaLike:
        if self.replica is None:
            raise RequestFailed(E_UNAVAILABLE, "the node is starting")
        return self.replica

    def _require_leader(self) -> ReplicaLike:
        replica = self._require_replica()
        if not replica.is_leader:
            raise RequestFailed(
                E_NOT_LEADER,
                f"{self.config.id} is not the leader; send writes to the leader",
                leader=self.leader_endpoint(),
            )
        return replica

    # -- waiters ------------------------------------------------------------------------------

    def _resolve_waiter(
        self, key: tuple[str, str], *, token: int | None = None, error: RequestFailed | None = None
    ) -> None:
        future = self.waiters.pop(key, None)
        self.timers.disarm_cancel(key)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(token if token is not None else 0)

    def _fail_waiters(self, error: RequestFailed) -> None:
        for key in list(self.waiters):
            self._resolve_waiter(key, error=error)

    # -- requests -----------------------------------------------------------------------------

    def _propose_future(self, command: Command) -> asyncio.Future[Any]:
        """Propose on the leader now; ``_outcome`` turns the future into an answer."""
        replica = self._require_leader()
        try:
            return replica.propose_future(encode_command(command), timeout=REQUEST_TIMEOUT)
        except NotLeader as exc:
            raise RequestFailed(
                E_NOT_LEADER, str(exc), leader=self.leader_endpoint(exc.leader)
            ) from exc
        except RaftError as exc:
            raise RequestFailed(E_UNAVAILABLE, str(exc)) from exc

    def _outcome(self, future: asyncio.Future[Any]) -> Outcome:
        """The applied outcome of a finished proposal, or the RequestFailed it amounts to."""
        try:
            outcome: Outcome = future.result()
        except NotLeader as exc:
            raise RequestFailed(
                E_NOT_LEADER, str(exc), leader=self.leader_endpoint(exc.leader)
            ) from exc
        except (ProposalTimeout, ProposalDropped) as exc:
            raise RequestFailed(E_TIMEOUT, f"outcome unknown: {exc}") from exc
        except RaftError as exc:
            raise RequestFailed(E_UNAVAILABLE, str(exc)) from exc
        if outcome.status == "error":
            raise RequestFailed(outcome.error or E_BAD_REQUEST, outcome.message)
        return outcome

    async def _propose(self, command: Command) -> Outcome:
        future = self._propose_future(command)
        with contextlib.suppress(Exception):  # _outcome says what it was; cancellation escapes
            await future
        return self._outcome(future)

    async def _read_barrier(self) -> None:
        replica = self._require_replica()
        if self.config.is_unsafe("stale-follower-reads") and not replica.is_leader:
            return
        try:
            await replica.linearizable_read(timeout=REQUEST_TIMEOUT)
        except NotLeader as exc:
            raise RequestFailed(
                E_NOT_LEADER, str(exc), leader=self.leader_endpoint(exc.leader)
            ) from exc
        except (ReadIndexTimeout, RaftError) as exc:
            raise RequestFailed(E_UNAVAILABLE, f"read not confirmed: {exc}") from exc

    async def handle(self, request: Request) -> Any:
        """Serve one non-streaming request; raises RequestFailed for an error reply."""
        args = request.args
        op = request.op
        if op == "open_session":
            outcome = await self._propose(
                OpenSession(args["client_id"], args["seq"], float(args["ttl"]), time.time())
            )
            return {"session": outcome.session, "ttl": float(args["ttl"])}
        if op == "keepalive":
            return await self._keepalive(args["session"])
        if op == "close_session":
            await self._propose(CloseSession(args["client_id"], args["seq"], args["session"]))
            return {}
        if op == "acquire":
            return await self._acquire(args)
        if op == "release":
            return self._released(await self._propose(_release_command(args)))
        if op == "owner":
            await self._read_barrier()
            view = self.machine.owner(args["name"])
            return {
                "holders": [
                    {"session": h.session, "token": h.token, "shared": h.shared, "value": h.value}
                    for h in view.holders
                ],
                "token": view.token,
                "waiters": list(view.waiters),
                "delayed": view.delayed,
                "revision": self.machine.events.last_revision,
            }
        if op == "check_token":
            await self._read_barrier()
            return {"valid": self.machine.check_token(args["name"], args["token"])}
        if op == "status":
            return self.status()
        if op == "members":
            return self.members()
        raise RequestFailed(E_BAD_REQUEST, f"op {op!r} is not served here")

    async def _keepalive(self, session_id: str) -> dict[str, Any]:
        replica = self._require_leader()
        session = self.machine.sessions.get(session_id)
        if session is None or self.timers.is_expiring(session_id):
            raise RequestFailed(E_SESSION_EXPIRED, f"session {session_id} expired")
        self.timers.renew(session_id, session.ttl)
        # Confirm leadership after receipt: a leader elected later starts a fresh TTL that ends
        # after this receipt's TTL, so the client's safe deadline stays safe.
        await self._read_barrier()
        if not replica.is_leader:
            raise RequestFailed(E_NOT_LEADER, "leadership moved", leader=self.leader_endpoint())
        if session_id not in self.machine.sessions or self.timers.is_expiring(session_id):
            raise RequestFailed(E_SESSION_EXPIRED, f"session {session_id} expired")
        return {"ttl": session.ttl}

    async def _acquire(self, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        command = _acquire_command(args)
        if self.config.is_unsafe("grant-before-commit"):
            early = self._grant_before_commit(command)
            if early is not None:
                return early
        granted = self._acquired(command, await self._propose(command), started)
        if granted is not None:
            return granted
        return await self._wait_for_grant(command, args.get("timeout"))

    # -- acquire and release without a task per request ----------------------------------------

    def begin_write(self, request: Request) -> PendingWrite | None:
        """Propose an acquire or release now; the caller finishes it with ``finish_write`` when
        the future is done. None: the request needs the general path (``handle``). Raises
        RequestFailed for an answer known at once (not the leader)."""
        if request.op == "release":
            command: Acquire | Release = _release_command(request.args)
        elif request.op == "acquire" and not self.config.is_unsafe("grant-before-commit"):
            command = _acquire_command(request.args)
        else:
            return None
        return PendingWrite(command, self._propose_future(command), time.monotonic())

    def finish_write(self, pending: PendingWrite) -> dict[str, Any] | None:
        """The reply for a finished ``begin_write``; None: an acquire was queued and must wait
        (``wait_for_grant``). Raises RequestFailed for an error reply."""
        outcome = self._outcome(pending.future)
        if isinstance(pending.command, Release):
            return self._released(outcome)
        return self._acquired(pending.command, outcome, pending.started)

    async def wait_for_grant(self, pending: PendingWrite, timeout: float | None) -> dict[str, Any]:
        assert isinstance(pending.command, Acquire)
        return await self._wait_for_grant(pending.command, timeout)

    @staticmethod
    def _released(outcome: Outcome) -> dict[str, Any]:
        return {"withdrawn": bool(outcome.message)}

    def _acquired(
        self, command: Acquire, outcome: Outcome, started: float
    ) -> dict[str, Any] | None:
        """Granted: the reply; busy (try-acquire): RequestFailed; queued: None."""
        if outcome.status == "ok" and outcome.token is not None:
            self.acquire_seconds.observe(time.monotonic() - started)
            return {"token": outcome.token, "session": command.session}
        if outcome.status == "busy":
            raise RequestFailed(E_ACQUIRE_TIMEOUT, f"{command.name} is held (try-acquire)")
        return None

    async def _wait_for_grant(self, command: Acquire, timeout: float | None) -> dict[str, Any]:
        """Queued: wait for the grant (or the leader's cancel at the timeout)."""
        key = (command.session, command.name)
        session = self.machine.sessions.get(command.session)
        if session is None:
            raise RequestFailed(E_SESSION_EXPIRED, f"session {command.session} expired")
        lock = self.machine.locks.get(command.name)
        holder = lock.holders.get(command.session) if lock else None
        if holder is not None:  # granted between apply and now (a retried request)
            return {"token": holder.token, "session": command.session}
        if command.name not in session.waiting:
            raise RequestFailed(E_ACQUIRE_TIMEOUT, f"{command.name}: no longer queued")
        future = self.waiters.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # The requests awaiting it may all be gone (connection closed): mark the outcome
            # retrieved so asyncio does not log "exception was never retrieved".
            future.add_done_callback(_retrieve_outcome)
            self.waiters[key] = future
        if timeout is not None and self.timers.leading:
            self.timers.arm_cancel(key, float(timeout))
        token = await asyncio.shield(future)
        return {"token": token, "session": command.session}

    def _grant_before_commit(self, command: Acquire) -> dict[str, Any] | None:
        """--unsafe-grant-before-commit: answer from local state and commit in the background."""
        replica = self._require_leader()
        if command.session not in self.machine.sessions:
            return None
        lock = self.machine.locks.get(command.name)
        if lock is not None and not lock.compatible(command.shared):
            return None
        self.timers.spawn(self.timers.propose_quietly(command))
        return {"token": replica.commit_index + 1, "session": command.session}

    # -- watches (the hub's; here for the client server) --------------------------------------

    def subscribe(
        self,
        prefix: str,
        from_revision: int,
        send: Callable[[WatchEvent | None, RequestFailed | None], None],
    ) -> tuple[Subscriber, int]:
        """Register a watch and replay its backlog (WatchHub.subscribe)."""
        return self.watches.subscribe(prefix, from_revision, send)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.watches.unsubscribe(subscriber)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        replica = self.replica
        return {
            "id": self.config.id,
            "role": str(getattr(getattr(replica, "role", None), "value", "starting")),
            "term": int(getattr(replica, "term", 0) or 0),
            "leader": replica.leader_id if replica else None,
            "leader_endpoint": self.leader_endpoint(),
            "commit_index": int(getattr(replica, "commit_index", 0) or 0),
            "applied_index": int(getattr(replica, "applied_index", 0) or 0),
            "unsafe": sorted(self.config.unsafe),
            # The wall clock this process sees (seconds since the epoch): the clock nemesis
            # reads it to check that a clock fault reached the server itself.
            "wall_time": time.time(),
        }

    def members(self) -> list[dict[str, Any]]:
        leader = self.replica.leader_id if self.replica else None
        return [
            {
                "id": node_id,
                "client_endpoint": member.client_endpoint,
                "http": f"{member.host}:{member.http_port}",
                "leader": node_id == leader,
            }
            for node_id, member in self.config.members.items()
        ]


@dataclass(slots=True)
class PendingWrite:
    """An acquire or release proposed by ``LockService.begin_write``."""

    command: Acquire | Release
    future: asyncio.Future[Any]
    started: float


def _acquire_command(args: dict[str, Any]) -> Acquire:
    timeout = args.get("timeout")
    return Acquire(
        args["client_id"],
        args["seq"],
        args["session"],
        args["name"],
        bool(args.get("shared", False)),
        wait=timeout != 0,
        value=str(args.get("value", "")),
    )


def _release_command(args: dict[str, Any]) -> Release:
    return Release(args["client_id"], args["seq"], args["session"], args["name"])


def _retrieve_outcome(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()
