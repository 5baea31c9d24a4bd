"""The bench's LockClient for etcd: etcd's lock recipe over gRPC (aetcd's stubs, grpc.aio).

gRPC, not the JSON gateway: measured with benchmarks/etcd_clients.py, the gRPC path does more
acquire+release pairs per second at every client count (docs/backends.md has the figures).

One client is one lease (the "session", named by the lease id in hex, as etcd names lock keys):

- ``acquire``: etcd's v3lock ``Lock(name, lease)`` creates key ``name/<lease hex>`` and returns
  once every older key under ``name/`` is gone. The fencing token is that key's create revision
  (one counter for the whole store: a later holder's key is always created later), read with a
  linearizable Range after the grant.
- ``release``: deletes the key only if it is still the one created at the granted revision
  (a transaction); if it is gone, the lease expired and the lock was lost at an unknown time:
  ``info``. (v3lock's ``Unlock`` is a plain delete, which "succeeds" on a lost lock.)
- keepalives run every TTL/3 in the background; ``lease_deadline`` is the send time of the last
  acknowledged keepalive plus the TTL etcd granted (etcd rounds TTLs up to whole seconds and to its
  minimum, 1.5 election timeouts). A keepalive answered with TTL 0 means etcd expired the lease.

A lock wait that reaches its timeout is cancelled (etcd then deletes the waiting key itself, if
it was written). What happened is found out with one transaction that deletes the waiting key if
it still exists and reads, in the same atomic step, which key was first: if it was ours, the lock
had just been granted (``info``). Otherwise the lease is revoked before answering ``fail``: a
cancelled call may still write its key later (a slow or partitioned member commits it after the
timeout), and once the lease is revoked no write with it can succeed. (The next acquire grants a
new lease; with other locks held the lease cannot be revoked, and the timeout is ``info``.) One
window stays open: a write delayed past the timeout that lands, and makes its key the holder,
between the transaction and the revocation would be a grant for a few milliseconds that the
history records as ``fail``; nothing in it can use that grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from bench.backends.etcd_v3lock import LockRequest, LockStub
from lockbench.protocols import DefiniteFailure, Grant, Indeterminate, LockEvent, OwnerInfo

T = TypeVar("T")
# Bound on one request other than a lock wait; the runner's per-op timeout bounds the whole op.
REQUEST_TIMEOUT_S = 2.0
# Bound on opening a client against one endpoint (a lease grant needs a quorum).
CONNECT_TIMEOUT_S = 3.0


def lease_ttl_seconds(ttl: float) -> int:
    """etcd leases have whole-second TTLs: the bench's TTL rounded up (never shorter)."""
    return max(1, math.ceil(ttl - 1e-9))


def lock_key(name: str, lease: int) -> bytes:
    """The key etcd's lock recipe creates for ``lease`` waiting on / holding ``name``."""
    return f"{name}/{lease:x}".encode()


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's convention)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def first_key_request(lock: str, *, serializable: bool = False) -> Any:
    """A Range for the key under ``lock/`` created first: the holder, in etcd's recipe."""
    prefix = f"{lock}/".encode()
    return rpc.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        sort_order=rpc.RangeRequest.ASCEND,
        sort_target=rpc.RangeRequest.CREATE,
        limit=1,
        serializable=serializable,
    )


def _is_unknown(error: Any) -> bool:
    """Errors after which a request may have taken effect (lost answers, timeouts)."""
    return error.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    )


async def _mapped(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run one gRPC call: errors that leave the outcome open become Indeterminate; the rest
    (the request was refused, e.g. an unknown lease) DefiniteFailure."""
    try:
        return await call()
    except grpc.aio.AioRpcError as error:
        message = f"{what}: {error.code().name}: {error.details()}"
        if _is_unknown(error):
            raise Indeterminate(message) from error
        raise DefiniteFailure(message) from error


async def open_etcd_client(
    endpoints: list[str],
    preferred: str,
    *,
    ttl: float,
    process: int,
    node_endpoints: Mapping[str, str] | None = None,
) -> EtcdLockClient:
    """Open a lease on the first endpoint that grants one, ``preferred`` (this process's node)
    first; raises Indeterminate if none does (the runner retries)."""
    order = [preferred, *(e for e in endpoints if e != preferred)]
    errors = []
    for endpoint in order:
        client = EtcdLockClient(endpoint, ttl=ttl, process=process, node_endpoints=node_endpoints)
        try:
            await client.connect()
        except (DefiniteFailure, Indeterminate, TimeoutError) as exc:
            errors.append(f"{endpoint}: {exc or type(exc).__name__}")
            await client.close()
            continue
        return client
    raise Indeterminate(f"no etcd endpoint granted a lease: {'; '.join(errors)}")


class EtcdLockClient:
    """One logical process's lease with etcd (implements lockbench.protocols.LockClient)."""

    def __init__(
        self,
        endpoint: str,
        *,
        ttl: float,
        process: int,
        node_endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ttl = lease_ttl_seconds(ttl)
        self.process = process
        self.node_endpoints = dict(node_endpoints or {})
        self._channels: dict[str, Any] = {}
        self._lease: int | None = None
        self._granted_ttl = self.ttl
        self._safe_deadline = 0.0
        self._lease_lost = False
        self._keepalive: asyncio.Task[None] | None = None
        self._held: dict[str, int] = {}  # lock name -> create revision of our key

    # -- connections -----------------------------------------------------------------------

    def _channel(self, endpoint: str | None = None) -> Any:
        target = endpoint or self.endpoint
        channel = self._channels.get(target)
        if channel is None:
            channel = grpc.aio.insecure_channel(target)
            self._channels[target] = channel
        return channel

    def _kv(self, endpoint: str | None = None) -> Any:
        return rpc.KVStub(self._channel(endpoint))

    def _leases(self) -> Any:
        return rpc.LeaseStub(self._channel())

    async def connect(self) -> None:
        """Grant a lease and start keeping it alive."""
        sent = time.monotonic()
        reply = await _mapped(
            "lease grant",
            lambda: self._leases().LeaseGrant(
                rpc.LeaseGrantRequest(TTL=self.ttl), timeout=CONNECT_TIMEOUT_S
            ),
        )
        if reply.error:
            raise DefiniteFailure(f"lease grant: {reply.error}")
        self._lease = int(reply.ID)
        self._granted_ttl = int(reply.TTL)
        self._safe_deadline = sent + self._granted_ttl
        self._lease_lost = False
        self._held.clear()
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    @property
    def session(self) -> str | None:
        return None if self._lease is None else f"{self._lease:x}"

    # -- the lease -------------------------------------------------------------------------

    def _lapsed(self) -> bool:
        return self._lease_lost or time.monotonic() >= self._safe_deadline

    async def _keep_alive(self) -> None:
        """Refresh the lease every TTL/3 until it lapses; a failed refresh is retried."""
        while not self._lapsed():
            await asyncio.sleep(self._granted_ttl / 3)
            if self._lapsed():
                return
            with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
                await self._refresh()

    async def _refresh(self) -> None:
        assert self._lease is not None
        sent = time.monotonic()
        remaining = max(0.1, self._safe_deadline - sent)
        call = self._leases().LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=self._lease)]),
            timeout=min(REQUEST_TIMEOUT_S, remaining),
        )
        try:
            async for reply in call:
                if reply.TTL <= 0:
                    self._lease_lost = True  # etcd no longer knows the lease: it expired
                elif not self._lapsed():
                    self._safe_deadline = sent + int(reply.TTL)
                return
        finally:
            call.cancel()

    def lease_deadline(self) -> float | None:
        """Since when (``time.monotonic()``) etcd may have expired the lease, once it may have.

        The send time of the last acknowledged keepalive plus the TTL etcd granted, once passed;
        if etcd said the lease is gone before then, the moment of asking (the earliest this
        client can vouch for)."""
        if self._lease is None:
            return None
        now = time.monotonic()
        if now >= self._safe_deadline:
            return self._safe_deadline
        if self._lease_lost:
            return now
        return None

    async def stall(self, seconds: float) -> None:
        """Suspend keepalives for ``seconds`` (a process frozen by a GC pause): the lease
        expires on etcd and the held locks go to others; keepalives resume after if it has not
        lapsed."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        await asyncio.sleep(seconds)
        if not self._lapsed():
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _live_lease(self) -> int:
        """The lease, after opening a fresh one if the old one lapsed (as an application would
        open a new session); the old one is revoked, which frees any key it still has."""
        if self._lease is None or self._lapsed():
            await self._revoke()
            await self.connect()
        assert self._lease is not None
        return self._lease

    async def _revoke(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
                await self._leases().LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease), timeout=REQUEST_TIMEOUT_S
                )

    # -- locks -----------------------------------------------------------------------------

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant:
        if shared:
            raise DefiniteFailure("etcd's lock recipe has no shared locks")
        lease = await self._live_lease()
        stub = LockStub(self._channel())
        try:
            reply = await stub.Lock(LockRequest(name=lock.encode(), lease=lease), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                await self._give_up_waiting(lock, lease, timeout)
            message = f"lock {lock}: {error.code().name}: {error.details()}"
            if _is_unknown(error):
                raise Indeterminate(message) from error
            if "lease not found" in (error.details() or ""):
                self._lease_lost = True
            raise DefiniteFailure(message) from error
        key = bytes(reply.key)
        found = await _mapped(
            f"lock {lock}: reading the key's revision",
            lambda: self._kv().Range(rpc.RangeRequest(key=key), timeout=REQUEST_TIMEOUT_S),
        )
        if not found.kvs:
            raise Indeterminate(f"lock {lock}: granted key {key!r} already gone (lease expired?)")
        revision = int(found.kvs[0].create_revision)
        self._held[lock] = revision
        return Grant(lock, revision, self.session)

    async def _give_up_waiting(self, lock: str, lease: int, timeout: float) -> None:
        """After a lock wait timed out: delete the waiting key, learning atomically whether it
        was the holder; DefiniteFailure only when it was there and was not (module docstring)."""
        key = lock_key(lock, lease)
        first = first_key_request(lock)
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key,
                    target=rpc.Compare.VERSION,
                    result=rpc.Compare.GREATER,
                    version=0,
                )
            ],
            success=[
                rpc.RequestOp(request_range=first),
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key)),
            ],
        )
        answer = await _mapped(
            f"lock {lock}: leaving the queue",
            lambda: self._kv().Txn(request, timeout=REQUEST_TIMEOUT_S),
        )
        owners = answer.responses[0].response_range.kvs if answer.succeeded else []
        if owners and bytes(owners[0].key) == key:
            raise Indeterminate(
                f"lock {lock}: granted as the wait timed out ({timeout:g}s); released at once"
            )
        if self._held:
            # the lease still guards other locks: it cannot be revoked to stop a late write
            raise Indeterminate(f"lock {lock}: not granted within {timeout:g}s; queue left?")
        # The cancelled call may still write the key later (a slow or partitioned member):
        # after the lease is revoked no write with it can succeed, so the wait is certainly over.
        await self._revoke()
        raise DefiniteFailure(f"lock {lock}: not granted within {timeout:g}s; left the queue")

    async def release(self, lock: str) -> None:
        revision = self._held.pop(lock, None)
        if revision is None or self._lease is None:
            raise DefiniteFailure(f"unlock {lock}: this client does not hold it")
        key = lock_key(lock, self._lease)
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key,
                    target=rpc.Compare.CREATE,
                    result=rpc.Compare.EQUAL,
                    create_revision=revision,
                )
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        answer = await _mapped(
            f"unlock {lock}", lambda: self._kv().Txn(request, timeout=REQUEST_TIMEOUT_S)
        )
        if not answer.succeeded:
            self._lease_lost = True
            raise Indeterminate(
                f"unlock {lock}: its key is gone: the lease expired and the lock was lost at a "
                "time this client cannot know"
            )

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo:
        """The holder: the key under ``lock/`` created first. From ``node``: a serializable
        (local) read on that member."""
        endpoint = None
        if node is not None:
            endpoint = self.node_endpoints.get(node, node if ":" in node else None)
            if endpoint is None:
                raise DefiniteFailure(f"owner {lock}: unknown node {node!r}")
        request = first_key_request(lock, serializable=node is not None)
        found = await _mapped(
            f"owner {lock}",
            lambda: self._kv(endpoint).Range(request, timeout=REQUEST_TIMEOUT_S),
        )
        if not found.kvs:
            return OwnerInfo(lock, (), None)
        holder = bytes(found.kvs[0].key)[len(lock) + 1 :].decode()
        return OwnerInfo(lock, (holder,), int(found.kvs[0].create_revision))

    async def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]:
        """Not offered: etcd's watch reports keys created and deleted, and a created key is a
        waiter, not a holder; turning that into grant events would be the bench's own guess."""
        raise DefiniteFailure("the etcd backend does not offer lock watches")
        yield  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        """Revoke the lease (etcd frees every key of it) and close the channels."""
        await self._revoke()
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
