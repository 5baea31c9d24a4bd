"""The asyncio lock client: one session, leader discovery, keepalive, safe deadline, watches.

Writes go to the leader (followers answer ``not-leader`` with the leader's client address and the
client follows the hint); reads may go to any node. Every write carries ``(client_id, seq)`` and
a retry reuses the same seq, so the service applies it at most once. The client's *safe
deadline* is the last moment the session is certainly alive on the leader: the send time of the
last acknowledged keepalive plus TTL, shrunk by ``drift_bound`` (the assumed maximum relative
clock-rate difference between client and leader). Past it the client reports the session lost even
if it heard nothing, because the leader may already have expired it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reference_impl.client.connection import Connection, ServerError, parse_endpoint
from reference_impl.client.errors import (
    AcquireTimeout,
    AuthError,
    BadRequest,
    ConnectionLost,
    DefiniteError,
    IndeterminateError,
    LockServiceError,
    NotHolder,
    RequestTimeout,
    SessionExpired,
    Unavailable,
    WatchCompacted,
)
from reference_impl.service.protocol import ELECTION_PREFIX

log = logging.getLogger(__name__)

DEFAULT_DRIFT_BOUND = 0.01  # 1% clock-rate difference; NTP-disciplined clocks drift ~0.01%
RETRY_BACKOFF_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lock: the fencing token to send with every access to the protected resource."""

    name: str
    token: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Holder:
    session: str
    token: int
    shared: bool
    value: str


@dataclass(frozen=True, slots=True)
class Owner:
    """A lock's holders as one node saw them after a linearizable read."""

    name: str
    holders: tuple[Holder, ...]
    token: int | None
    waiters: tuple[str, ...] = ()
    revision: int = 0  # the watch revision this read reflects: watch from revision + 1


@dataclass(frozen=True, slots=True)
class WatchEvent:
    revision: int
    kind: str
    name: str
    session: str | None
    token: int | None


def _error_from_server(exc: ServerError, endpoint: str) -> LockServiceError:
    message = f"{endpoint}: {exc.message}"
    definite: dict[str, type[DefiniteError]] = {
        "session-expired": SessionExpired,
        "not-holder": NotHolder,
        "bad-request": BadRequest,
        "conflict": BadRequest,
        "stale-request": BadRequest,
        "protocol": BadRequest,
        "auth": AuthError,
        "acquire-timeout": AcquireTimeout,
    }
    if exc.code in definite:
        return definite[exc.code](message)
    if exc.code == "compacted":
        return WatchCompacted(message)
    if exc.code == "timeout":
        return RequestTimeout(message)
    return Unavailable(f"{endpoint}: {exc.code}: {exc.message}")


class AsyncLockClient:
    """A session with the lock service. Create with ``await AsyncLockClient.connect(...)``."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ttl: float,
        timeout: float,
        auth_token: str | None,
        ssl: ssl_module.SSLContext | None,
        client_id: str | None,
        drift_bound: float,
        on_session_lost: Callable[[str], None] | None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint (host:port) is needed")
        for endpoint in endpoints:
            parse_endpoint(endpoint)
        if not 0 <= drift_bound < 0.5:
            raise ValueError("drift_bound must be in [0, 0.5)")
        self.endpoints = list(endpoints)
        self.ttl = ttl
        self.timeout = timeout
        self.auth_token = auth_token
        self.ssl = ssl
        self.client_id = client_id or uuid.uuid4().hex
        self.drift_bound = drift_bound
        self.on_session_lost = on_session_lost
        self.session_id: str | None = None
        self.session_lost = False
        self.lost_reason: str | None = None
        self.held: dict[str, Lease] = {}
        self._safe_deadline = 0.0
        self._seq = 0
        self._connections: dict[str, Connection] = {}
        self._leader: str | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def connect(
        cls,
        endpoints: Sequence[str],
        *,
        ttl: float = 10.0,
        timeout: float = 5.0,
        auth_token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        client_id: str | None = None,
        drift_bound: float = DEFAULT_DRIFT_BOUND,
        on_session_lost: Callable[[str], None] | None = None,
    ) -> AsyncLockClient:
        """Open a session (``ttl`` seconds) and start the background keepalive."""
        client = cls(
            endpoints,
            ttl=ttl,
            timeout=timeout,
            auth_token=auth_token,
            ssl=ssl,
            client_id=client_id,
            drift_bound=drift_bound,
            on_session_lost=on_session_lost,
        )
        try:
            sent = time.monotonic()
            result = await client._write("open_session", {"ttl": ttl})
        except BaseException:
            await client._close_connections()
            raise
        client.session_id = str(result["session"])
        client._safe_deadline = sent + ttl * (1 - drift_bound)
        client._keepalive_task = asyncio.get_running_loop().create_task(client._keepalive_loop())
        return client

    # -- session ------------------------------------------------------------------------------

    @property
    def safe_deadline(self) -> float:
        """time.monotonic() value until which the session is certainly alive on the leader."""
        return self._safe_deadline

    def session_alive(self) -> bool:
        """False once the session is known lost or the safe deadline passed."""
        if not self.session_lost and time.monotonic() >= self._safe_deadline:
            self._lose("safe deadline passed without an acknowledged keepalive")
        return not self.session_lost

    def _lose(self, reason: str) -> None:
        if self.session_lost:
            return
        self.session_lost = True
        self.lost_reason = reason
        self.held.clear()
        log.warning("session %s lost: %s", self.session_id, reason)
        if self.on_session_lost is not None:
            try:
                self.on_session_lost(reason)
            except Exception:
                log.exception("session-lost callback failed")

    def _require_session(self) -> str:
        if self.session_id is None or not self.session_alive():
            raise SessionExpired(f"session {self.session_id} is lost: {self.lost_reason}")
        return self.session_id

    async def _keepalive_loop(self) -> None:
        interval = max(self.ttl / 3, 0.1)
        while not self._closed and not self.session_lost:
            remaining = self._safe_deadline - time.monotonic()
            await asyncio.sleep(min(interval, max(remaining, 0.0)))
            if not self.session_alive():
                return
            sent = time.monotonic()
            try:
                await self._write(
                    "keepalive",
                    {"session": self.session_id},
                    sequenced=False,
                    budget=max(self._safe_deadline - sent, 0.05),
                )
            except SessionExpired as exc:
                self._lose(f"the service expired the session: {exc}")
                return
            except LockServiceError as exc:
                log.info("keepalive failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_BACKOFF_SECONDS)
                continue
            self._safe_deadline = max(self._safe_deadline, sent + self.ttl * (1 - self.drift_bound))

    async def stall_keepalive(self, seconds: float) -> None:
        """Send no keepalive for ``seconds`` (a simulated GC pause of the holder), then resume if
        the session still looks alive. The session may expire on the service meanwhile."""
        task = self._keepalive_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await asyncio.sleep(seconds)
        if not self._closed and self.session_alive():
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive_loop())

    # -- connections and retries --------------------------------------------------------------

    async def _connection(self, endpoint: str) -> Connection:
        connection = self._connections.get(endpoint)
        if connection is not None and not connection.closed:
            return connection
        connection = await Connection.open(
            endpoint,
            timeout=self.timeout,
            ssl=self.ssl,
            auth_token=self.auth_token,
            client_id=self.client_id,
        )
        # The keepalive and a request may open one endpoint at the same time: keep the first
        # and close ours, so no connection (and its reader task) is dropped unclosed.
        current = self._connections.get(endpoint)
        if self._closed or (current is not None and not current.closed):
            await connection.close()
            if current is None or current.closed:
                raise ConnectionLost(f"{endpoint}: the client was closed")
            return current
        self._connections[endpoint] = connection
        return connection

    def _demote(self, endpoint: str) -> None:
        """An endpoint that did not answer goes to the back of the line (and is not leader)."""
        if self._leader == endpoint:
            self._leader = None
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
            self.endpoints.append(endpoint)

    def _candidates(self) -> list[str]:
        order = list(self.endpoints)
        if self._leader is not None:
            order = [self._leader] + [e for e in order if e != self._leader]
        return order

    async def _write(  # noqa: C901, PLR0912 - the retry rules of one write, in order
        self,
        op: str,
        args: dict[str, Any],
        *,
        sequenced: bool = True,
        budget: float | None = None,
        call_timeout: float | None = None,
    ) -> Any:
        """Send a write to the leader, following hints and retrying within ``budget`` seconds.

        The same (client_id, seq) is used for every retry, so the service applies it once. Only
        errors from a server that certainly did not apply the request are retried on another node.
        """
        if sequenced:
            self._seq += 1
            args = {**args, "client_id": self.client_id, "seq": self._seq}
        deadline = time.monotonic() + (budget if budget is not None else self.timeout * 2)
        last: LockServiceError = Unavailable("no endpoint tried")
        maybe_applied = False
        attempt = 0
        while True:
            candidates = self._candidates()
            endpoint = candidates[attempt % len(candidates)]
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if sequenced and op != "open_session" and self.session_lost:
                if maybe_applied:  # an earlier attempt may have taken effect
                    raise RequestTimeout(f"session lost while {op} was in doubt: {last}")
                raise SessionExpired(f"session lost during {op}: {self.lost_reason}")
            try:
                connection = await self._connection(endpoint)
            except ConnectionLost as exc:  # never sent: says nothing about applying
                last = Unavailable(str(exc)) if not maybe_applied else last
                self._demote(endpoint)
                await asyncio.sleep(RETRY_BACKOFF_SECONDS)
                continue
            try:
                # One attempt waits at most call_timeout (default: the request timeout); a hung
                # (paused, partitioned) node then costs one attempt, not the whole budget.
                per_call = min(remaining, call_timeout or self.timeout)
                return await connection.call(
                    op, args, timeout=None if per_call == float("inf") else per_call
                )
            except ServerError as exc:
                if exc.code == "not-leader":
                    self._leader = exc.leader
                    if exc.leader is not None and exc.leader not in self.endpoints:
                        self.endpoints.append(exc.leader)  # discovered a member
                    last = Unavailable(f"{endpoint}: {exc.message}")
                    if self._leader is None:
                        await asyncio.sleep(RETRY_BACKOFF_SECONDS)
                    continue
                error = _error_from_server(exc, endpoint)
                if isinstance(error, IndeterminateError):
                    maybe_applied = maybe_applied or exc.code == "timeout"
                    last = error
                    self._leader = None
                    await asyncio.sleep(RETRY_BACKOFF_SECONDS)
                    continue
                raise error from exc
            except (ConnectionLost, TimeoutError) as exc:
                maybe_applied = True
                if isinstance(exc, ConnectionLost):
                    last = exc
                else:
                    last = RequestTimeout(f"{endpoint}: {op} got no answer in time")
                self._demote(endpoint)
                await asyncio.sleep(RETRY_BACKOFF_SECONDS)
            except AuthError:
                raise
        if maybe_applied and not isinstance(last, RequestTimeout | ConnectionLost):
            last = RequestTimeout(f"{op} gave no definite answer in time: {last}")
        raise last

    async def _read(self, op: str, args: dict[str, Any], endpoint: str | None) -> Any:
        if endpoint is None:
            return await self._write(op, args, sequenced=False)
        try:
            connection = await self._connection(endpoint)
            return await connection.call(op, args, timeout=self.timeout)
        except ServerError as exc:
            raise _error_from_server(exc, endpoint) from exc
        except TimeoutError as exc:
            raise RequestTimeout(f"{endpoint}: {op} timed out") from exc

    # -- locks --------------------------------------------------------------------------------

    async def acquire(
        self, name: str, *, timeout: float | None = None, shared: bool = False, value: str = ""
    ) -> Lease:
        """Acquire ``name``; ``timeout`` None blocks in the FIFO queue, 0 tries once.

        AcquireTimeout when the timeout passed in the queue (the server removed the waiter);
        RequestTimeout/ConnectionLost when the outcome is unknown.
        """
        session = self._require_session()
        args: dict[str, Any] = {"session": session, "name": name, "shared": shared}
        if timeout is not None:
            args["timeout"] = timeout
        if value:
            args["value"] = value
        if timeout is None:
            # Blocking: re-send the same (client_id, seq) every request timeout; the service
            # answers a retry of a queued acquire by waiting again, so nothing is applied twice
            # and a hung leader is left behind. It ends when granted or the session is lost.
            result = await self._write("acquire", args, budget=float("inf"))
        else:
            result = await self._write(
                "acquire",
                args,
                budget=timeout + self.timeout * 2,
                call_timeout=timeout + self.timeout,
            )
        lease = Lease(name, int(result["token"]), session)
        if not self.session_alive():
            # Granted, but the session may already be expired on the leader: the lock must not
            # be used, and whether it is held is unknown (the service will expire it).
            raise RequestTimeout(
                f"{name} granted (token {lease.token}) after the session's safe deadline; "
                f"do not use it: {self.lost_reason}"
            )
        self.held[name] = lease
        return lease

    async def release(self, name: str) -> None:
        session = self._require_session()
        try:
            await self._write("release", {"session": session, "name": name})
        finally:
            self.held.pop(name, None)

    async def release_for(self, session: str, name: str) -> None:
        """Release ``name`` on behalf of another session (an operator freeing a stuck holder)."""
        await self._write("release", {"session": session, "name": name})

    async def owner(self, name: str, *, endpoint: str | None = None) -> Owner:
        """Linearizable read of a lock's holders, from ``endpoint`` (any node) or the leader."""
        result = await self._read("owner", {"name": name}, endpoint)
        holders = tuple(
            Holder(h["session"], h["token"], h["shared"], h["value"]) for h in result["holders"]
        )
        return Owner(
            name,
            holders,
            result["token"],
            tuple(result.get("waiters", ())),
            int(result.get("revision", 0)),
        )

    async def check_token(self, name: str, token: int, *, endpoint: str | None = None) -> bool:
        """Whether ``token`` is still a current holder's token of ``name`` (CheckSequencer)."""
        result = await self._read("check_token", {"name": name, "token": token}, endpoint)
        return bool(result["valid"])

    async def status(self, endpoint: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._read("status", {}, endpoint)
        return result

    async def members(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._write("members", {}, sequenced=False)
        return result

    async def watch(
        self, prefix: str, *, from_revision: int = 0
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events of locks under ``prefix`` in revision order, resumed across reconnects.

        ``from_revision`` 0 starts with the next event; r > 0 replays every kept event >= r first.
        WatchCompacted when r is older than the server's bounded event log.
        """
        next_revision = from_revision
        attempts = 0
        while not self._closed:
            endpoint = self._candidates()[attempts % len(self.endpoints)]
            try:
                connection = await self._connection(endpoint)
            except LockServiceError as exc:
                attempts += 1
                if attempts > 3 * len(self.endpoints):
                    raise Unavailable(f"watch: no endpoint reachable: {exc}") from exc
                await asyncio.sleep(RETRY_BACKOFF_SECONDS * attempts)
                continue
            request_id, queue = connection.stream(
                "watch", {"prefix": prefix, "from_revision": next_revision}
            )
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if "event" in item:
                        data = item["event"]
                        event = WatchEvent(
                            data["revision"],
                            data["kind"],
                            data["name"],
                            data["session"],
                            data["token"],
                        )
                        next_revision = event.revision + 1
                        attempts = 0
                        yield event
                    elif item.get("ok"):
                        if next_revision == 0:
                            next_revision = int(item["result"]["revision"]) + 1
                    else:
                        error = item.get("error") or {}
                        raise _error_from_server(
                            ServerError(
                                str(error.get("code")),
                                str(error.get("message")),
                                error.get("leader"),
                            ),
                            endpoint,
                        )
            except IndeterminateError as exc:
                attempts += 1
                if attempts > 3 * len(self.endpoints):
                    raise
                log.info("watch on %s interrupted (%s); resuming", endpoint, exc)
                self._leader = None if self._leader == endpoint else self._leader
                await asyncio.sleep(RETRY_BACKOFF_SECONDS)
            finally:
                connection.end_stream(request_id)

    # -- client elections ----------------------------------------------------------------------

    async def campaign(self, election: str, value: str, *, timeout: float | None = None) -> Lease:
        """Block until this session leads ``election``; the lease token orders leaders."""
        return await self.acquire(ELECTION_PREFIX + election, timeout=timeout, value=value)

    async def resign(self, election: str) -> None:
        await self.release(ELECTION_PREFIX + election)

    async def leader(self, election: str, *, endpoint: str | None = None) -> Holder | None:
        owner = await self.owner(ELECTION_PREFIX + election, endpoint=endpoint)
        return owner.holders[0] if owner.holders else None

    async def observe(self, election: str) -> AsyncGenerator[Holder | None, None]:
        """The current leader of ``election``, then every change of it."""
        name = ELECTION_PREFIX + election
        owner = await self.owner(name)
        status = owner.holders[0] if owner.holders else None
        yield status
        # Watch from just after the read, so no change between the two is missed.
        async for event in self.watch(name, from_revision=owner.revision + 1):
            if event.name != name:
                continue
            current = await self.leader(election)
            if current != status:
                status = current
                yield current

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the session (releasing its locks) and the connections.

        Even when the caller gives up on it (a timeout cancels the close_session request), the
        keepalive and every connection's reader task are cancelled: nothing is left pending.
        """
        if self._closed:
            return
        keepalive = self._keepalive_task
        try:
            if keepalive is not None:
                keepalive.cancel()
                await asyncio.wait({keepalive})
            if self.session_id is not None:
                await self._close_session(self.session_id)
        finally:
            self._closed = True
            self.held.clear()
            for connection in self._connections.values():
                connection.abort()  # synchronous: done even if we are being cancelled
        await self._close_connections()

    async def _close_session(self, session: str) -> None:
        """Ask the service to end the session now, releasing its locks; best effort.

        Also when this client already counts the session as lost: "lost" means only that its
        safe deadline passed, and the service may still hold the session (and its locks) for
        up to a TTL. Ending it frees those locks for the waiters at once. The request is sent
        with its own sequence number, since a lost session refuses further sequenced writes.
        """
        self._seq += 1
        args = {"session": session, "client_id": self.client_id, "seq": self._seq}
        with contextlib.suppress(LockServiceError):
            await self._write("close_session", args, sequenced=False, budget=self.timeout)

    async def _close_connections(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.close()

    async def __aenter__(self) -> AsyncLockClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
