"""The bench's LockClient for lockd: an adapter over ``reference_impl.client.AsyncLockClient``.

It maps the client library's errors onto the history's outcomes: ``DefiniteError`` (not holder,
acquire timed out in the queue, bad request) becomes ``DefiniteFailure`` -> ``fail``;
``IndeterminateError`` (unavailable, request timeout, connection lost) becomes ``Indeterminate``
-> ``info``. ``SessionExpired`` is the exception: although the library files it as definite (the
request itself had no effect), the session's locks were released by the service at a time the
client cannot know, and an acquire may even have been granted just before the session was
found lost. Recording it as ``info`` retires the process, which is how the checkers model a
holder that lost its locks. After a lost session the next acquire opens a fresh one, as an
application would, so a process can go on after a stall or a long partition.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from lockbench.protocols import DefiniteFailure, Grant, Indeterminate, LockEvent, OwnerInfo
from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import (
    DefiniteError,
    IndeterminateError,
    LockServiceError,
    SessionExpired,
)

T = TypeVar("T")
# The client library's own per-request timeout; the runner's per-op timeout bounds the whole op.
REQUEST_TIMEOUT_S = 2.0
# Node name -> client endpoint, learned from lockd's member list, per cluster (set of endpoints).
# Membership is fixed for a run, so every client of the run shares one lookup.
_MEMBER_ENDPOINTS: dict[frozenset[str], dict[str, str]] = {}


async def open_reference_client(
    endpoints: list[str],
    preferred: str,
    *,
    ttl: float,
    process: int,
    node_endpoints: Mapping[str, str] | None = None,
    request_timeout: float = REQUEST_TIMEOUT_S,
) -> ReferenceLockClient:
    """Open a session on lockd, trying ``preferred`` (this process's node) first.

    ``node_endpoints`` maps node names to client endpoints, for reads from a named node (the
    follower-read workload); without it the names are learned from lockd's member list.
    """
    order = [preferred, *(e for e in endpoints if e != preferred)]
    client = ReferenceLockClient(
        order,
        ttl=ttl,
        process=process,
        node_endpoints=node_endpoints,
        request_timeout=request_timeout,
    )
    await client.connect()
    return client


class ReferenceLockClient:
    """One logical process's session with lockd (implements lockbench.protocols.LockClient)."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        ttl: float,
        process: int,
        node_endpoints: Mapping[str, str] | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.endpoints = endpoints
        self.request_timeout = request_timeout
        self.ttl = ttl
        self.process = process
        self.node_endpoints = dict(node_endpoints or {})
        self._client: Any = None

    async def connect(self) -> None:
        self._client = await _mapped(
            lambda: AsyncLockClient.connect(
                self.endpoints,
                ttl=self.ttl,
                timeout=self.request_timeout,
                client_id=f"lockbench-p{self.process}-{uuid.uuid4().hex[:8]}",
            )
        )

    @property
    def session(self) -> str | None:
        return None if self._client is None else self._client.session_id

    async def _live(self) -> Any:
        """The client, reconnected first when its session is known lost."""
        if self._client is None or not self._client.session_alive():
            old = self._client
            await self.connect()
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()
        return self._client

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant:
        client = await self._live()
        lease = await _mapped(lambda: client.acquire(lock, timeout=timeout, shared=shared))
        return Grant(lock, int(lease.token), str(lease.session_id))

    async def release(self, lock: str) -> None:
        client = self._require()
        await _mapped(lambda: client.release(lock))

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo:
        client = self._require()
        endpoint = None if node is None else await self._endpoint_of(node)
        owner = await _mapped(lambda: client.owner(lock, endpoint=endpoint))
        holders = tuple(str(h.session) for h in owner.holders)
        return OwnerInfo(lock, holders, owner.token)

    async def _endpoint_of(self, node: str) -> str:
        """A node name's client endpoint: given, or from lockd's member list (asked once)."""
        if node in self.node_endpoints:
            return self.node_endpoints[node]
        if ":" in node:
            return node
        key = frozenset(self.endpoints)
        known = _MEMBER_ENDPOINTS.get(key)
        if known is None:
            try:
                members = await self._require().members()
            except LockServiceError as exc:
                # nothing was read yet: the owner read certainly did not happen
                raise DefiniteFailure(f"cannot resolve node {node!r}: {exc}") from exc
            known = {str(m["id"]): str(m["client_endpoint"]) for m in members}
            _MEMBER_ENDPOINTS[key] = known
        self.node_endpoints.update(known)
        if node not in known:
            raise DefiniteFailure(f"no node {node!r} among lockd's members {sorted(known)}")
        return known[node]

    async def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]:
        client = self._require()
        stream = client.watch(prefix, from_revision=from_revision)
        try:
            while True:
                try:
                    event = await _mapped(stream.__anext__)
                except StopAsyncIteration:
                    return
                yield LockEvent(event.revision, event.kind, event.name, event.session, event.token)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    def lease_deadline(self) -> float | None:
        """Since when (``time.monotonic()``) lockd may have expired this session, once it may have.

        That is the client library's safe deadline (send time of the last acknowledged keepalive
        plus TTL x (1 - drift bound)) when it has passed. If the library learned the session was
        lost before that deadline, the moment it is asked is the earliest it can vouch for.
        Read-only: it does not mark the session lost (the next request does that).
        """
        client = self._client
        if client is None:
            return None
        deadline = float(client.safe_deadline)
        now = time.monotonic()
        if now >= deadline:
            return deadline
        if client.session_lost:
            return now
        return None

    async def stall(self, seconds: float) -> None:
        """Suspend keepalives for ``seconds``, like a process frozen by a long GC pause.

        The session expires on the service meanwhile; the held locks go to other processes.
        The client library's ``stall_keepalive`` owns the keepalive task and restarts it after.
        """
        await self._require().stall_keepalive(seconds)

    def _require(self) -> Any:
        if self._client is None:
            raise DefiniteFailure("the client is not connected")
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


async def _mapped(call: Callable[[], Awaitable[T]]) -> T:
    """Run a client-library call, mapping its errors onto fail (definite) and info (unknown)."""
    try:
        return await call()
    except SessionExpired as exc:
        raise Indeterminate(f"{type(exc).__name__}: {exc}") from exc
    except DefiniteError as exc:
        raise DefiniteFailure(f"{type(exc).__name__}: {exc}") from exc
    except IndeterminateError as exc:
        raise Indeterminate(f"{type(exc).__name__}: {exc}") from exc
