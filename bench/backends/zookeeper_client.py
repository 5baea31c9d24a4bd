"""The bench's LockClient for ZooKeeper: kazoo's Lock recipe, driven from asyncio.

kazoo is threaded: its connection thread owns the socket, and every call blocks the calling
thread until the reply. Each logical process gets its own kazoo client and a small thread pool
of its own (the event loop's default pool has only cpu + 4 threads, fewer than the bench's
processes), and every blocking call runs there. A call the runner abandons at its per-op
timeout keeps running in its thread; the process is retired (``info``) and ``close`` stops the
kazoo client, which closes the session, so ZooKeeper deletes whatever ephemeral node it left.

Fencing token: the lock node's sequence number (the suffix ZooKeeper appends to an ephemeral
sequential node). ZooKeeper numbers the children of one parent from a counter it never reuses,
and the recipe grants the lock to the lowest-numbered node present, so a node is granted only
after every lower-numbered node is gone, and nodes created later get higher numbers: each grant
of one lock has a higher token than every earlier grant of it (the bench never deletes the
parent, which would restart the counter).

Session expiry: the *leader* expires a session T after it last heard of it (rounded up to its next
tick) and deletes its ephemeral nodes, so the lock goes to the next waiter. kazoo's Lock keeps
saying it is acquired. A follower answers its clients' pings itself and relays the sessions it
heard from to the leader with its answer to the leader's next ping (every tick/2); a follower cut
off from the leader goes on answering pings until it notices, ``syncLimit`` ticks later, so
"my server answers" says nothing about the session at the leader (the known anomaly,
docs/comparison.md). So by default (``lease_from="sync"``) the client sends a ``sync`` every
T/4: the server forwards it to the leader and answers only once the leader has, so an answered
sync sent at s shows the server was in contact with the leader after s, and the leader was told
of the session no earlier than s - T/4 - tick/2 (the touch relayed at the last leader ping before
s is at most one heartbeat old). The lease deadline is that + T x (1 - ``EXPIRY_MARGIN``).
``lease_from="ping"`` is what kazoo's own connection state tells an application: the last
moment the server answered anything (the handler's ``select`` saw the socket readable).
``lease_deadline`` reports the deadline once it has passed; releases of a lock whose session
was lost are ``info`` (the service released it at a time the client cannot know).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, LockTimeout, NoNodeError
from kazoo.handlers.threading import SequentialThreadingHandler

from lockbench.protocols import DefiniteFailure, Grant, Indeterminate, LockEvent, OwnerInfo

T = TypeVar("T")
LOCK_ROOT = "/lockbench/locks"
# Latency between the server hearing the client and the client hearing the reply, and the two
# machines' clock rates, can make the server's view of "last heard" earlier than ours: the
# lease deadline is taken this fraction of the session timeout early.
EXPIRY_MARGIN = 0.05
CONNECT_TIMEOUT_S = 10.0
# Where the lease is measured from: an answered sync (confirmed by the leader) or any answer.
LEASE_SOURCES: tuple[str, ...] = ("sync", "ping")
# Heartbeat syncs per session timeout, and at most this many unanswered at once (a connection
# that answers none is dropped by kazoo after 2T/3; unanswered syncs then fail).
HEARTBEATS_PER_TIMEOUT = 4
MAX_SYNCS_IN_FLIGHT = 4
CLOSE_TIMEOUT_S = 5.0
# kazoo's Lock node names end in "__lock__" and ten digits (the sequence number).
_SEQUENCE = re.compile(r"__lock__(-?\d{10})$")


def lock_path(lock: str) -> str:
    """The recipe's parent node for a lock name (a name may contain '/', a znode name may not)."""
    return f"{LOCK_ROOT}/{urllib.parse.quote(lock, safe='')}"


def sequence_of(node_name: str) -> int:
    """The sequence number ZooKeeper gave a lock node (its fencing token)."""
    match = _SEQUENCE.search(node_name)
    if match is None:
        raise ValueError(f"{node_name!r} is not a kazoo lock node name")
    return int(match.group(1))


def session_timeout_for(ttl: float, tick_ms: int) -> float:
    """The session timeout to ask for: the TTL, within the server's 2..20 ticks.

    The server would clamp it anyway; asking for what it will grant keeps the client's idea of
    the timeout (and so its lease deadline) the server's.
    """
    tick = tick_ms / 1000.0
    return min(max(ttl, 2 * tick), 20 * tick)


class HeardHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler, plus what a session needs: when a server was last heard from,
    and a stall that freezes the connection thread (a process stopped by a long GC pause).

    kazoo's connection thread waits for its socket in ``select``; the socket is the first of
    the sockets it watches. Readable while the session is connected means a server spoke (a
    reply, a ping's answer). While kazoo is reconnecting it is not counted: a server that is not
    serving (cut off from its quorum) closes each new connection, and end-of-file is readable
    too, but the session's server has not heard from the client."""

    def __init__(self) -> None:
        super().__init__()
        self.client: Any = None  # the KazooClient, once made
        self.last_heard = time.monotonic()
        self._thawed = threading.Event()
        self._thawed.set()

    def select(self, *args: Any, **kwargs: Any) -> Any:
        self._thawed.wait()
        result = super().select(*args, **kwargs)
        readable, watched = result[0], (args[0] if args else [])
        connected = self.client is not None and self.client.connected
        if connected and watched and readable and watched[0] in readable:
            self.last_heard = time.monotonic()
        return result

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()


class HostsCountedAsOne(list[tuple[str, int]]):
    """kazoo's host list, counted as one host when kazoo sizes its connect timeout.

    kazoo (like ZooKeeper's Java client) gives each connection attempt the session timeout
    divided by the number of hosts: 0.6 s for five hosts and a 3 s session, less than creating a
    session (a quorum commit) takes on a loaded two-core machine, so no client ever connected.
    Counted as one, each attempt may take the whole session timeout; kazoo still tries every
    host in order.
    """

    def __len__(self) -> int:
        return 1


@dataclass
class _Held:
    """A grant this process believes it holds: the recipe, its node and the session it was in."""

    recipe: Any
    node: str
    session_id: int
    lost_count: int


async def open_zookeeper_client(
    hosts: list[str],
    *,
    ttl: float,
    process: int,
    tick_ms: int = 1000,
    lease_from: str = "sync",
) -> ZooKeeperLockClient:
    """Connect a kazoo client to ``hosts`` (tried in order) with a session of about ``ttl`` s."""
    client = ZooKeeperLockClient(
        hosts,
        session_timeout_for(ttl, tick_ms),
        process,
        tick_s=tick_ms / 1000.0,
        lease_from=lease_from,
    )
    await client.connect()
    return client


class ZooKeeperLockClient:
    """One logical process's ZooKeeper session (implements bench.protocols.LockClient)."""

    def __init__(
        self,
        hosts: list[str],
        session_timeout: float,
        process: int,
        *,
        tick_s: float = 1.0,
        lease_from: str = "sync",
    ) -> None:
        if lease_from not in LEASE_SOURCES:
            raise ValueError(
                f"lease_from must be one of {', '.join(LEASE_SOURCES)}: {lease_from!r}"
            )
        self.hosts = hosts
        self.session_timeout = session_timeout
        self.process = process
        self.tick_s = tick_s
        self.lease_from = lease_from
        self.heartbeat_s = session_timeout / HEARTBEATS_PER_TIMEOUT
        # sync: the earliest moment the leader may last have been told of the session (monotonic)
        self._known_at = time.monotonic()
        self._syncs_in_flight = 0
        self._in_flight_lock = threading.Lock()  # the loop sends, kazoo's callback thread counts
        self._heartbeat: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"zk-p{process}")
        self._heard = HeardHandler()
        self._kazoo: Any = None
        self._held: dict[str, _Held] = {}
        self._pending: set[Any] = set()
        # Sessions kazoo saw expire (LOST), counted: a grant made before a loss is gone.
        self._lost_count = 0
        self._lost_at: float | None = None

    async def connect(self) -> None:
        # the leader creates the session after this moment, with a whole timeout ahead of it
        self._known_at = time.monotonic()
        self._kazoo = KazooClient(
            hosts=",".join(self.hosts),
            timeout=self.session_timeout,
            handler=self._heard,
            randomize_hosts=False,
            connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.5},
        )
        self._heard.client = self._kazoo
        self._kazoo.hosts = HostsCountedAsOne(self._kazoo.hosts)
        self._kazoo.add_listener(self._on_state)
        try:
            await self._call(lambda: self._kazoo.start(timeout=CONNECT_TIMEOUT_S))
        except BaseException:
            # kazoo's start gives up waiting but leaves its connection thread retrying for
            # ever; the runner opens a fresh client after a failed open, so each failure
            # would leave one more client hammering the servers
            await self.close()
            raise
        self._heard.last_heard = time.monotonic()
        if self.lease_from == "sync":
            self._heartbeat = asyncio.get_running_loop().create_task(self._send_heartbeats())

    async def _send_heartbeats(self) -> None:
        """A ``sync`` every T/4 (see the module's docstring); answers advance the lease."""
        while True:
            if self._syncs_in_flight < MAX_SYNCS_IN_FLIGHT:
                sent = time.monotonic()
                try:
                    result = self._kazoo.sync_async("/")
                except Exception:  # closed or closing: no lease from this one
                    result = None
                if result is not None:
                    with self._in_flight_lock:
                        self._syncs_in_flight += 1
                    result.rawlink(lambda answered, sent=sent: self._synced(answered, sent))
            await asyncio.sleep(self.heartbeat_s)

    def _synced(self, answered: Any, sent: float) -> None:
        """kazoo's callback thread: an answered sync sent at ``sent`` confirms the session."""
        with self._in_flight_lock:
            self._syncs_in_flight -= 1
        if answered.successful():
            self._known_at = max(self._known_at, sent - self.heartbeat_s - self.tick_s / 2)

    def _on_state(self, state: str) -> None:
        if state == "LOST":
            self._lost_count += 1
            self._lost_at = time.monotonic()

    @property
    def session(self) -> str | None:
        session_id = self._session_id()
        return None if session_id is None else f"{session_id:x}"

    def _session_id(self) -> int | None:
        if self._kazoo is None:
            return None
        session_id = self._kazoo.client_id
        return None if session_id is None else int(session_id[0])

    async def _call(self, blocking: Callable[[], T]) -> T:
        """Run a blocking kazoo call in this client's threads; kazoo errors become ``info``."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, blocking)
        except (DefiniteFailure, Indeterminate):
            raise
        except KazooException as exc:
            raise Indeterminate(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # kazoo's handler timeouts are not KazooExceptions
            raise Indeterminate(f"{type(exc).__name__}: {exc}") from exc

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant:
        if shared:
            raise DefiniteFailure("the zookeeper backend offers exclusive locks only")
        if lock in self._held:
            raise DefiniteFailure(f"already holds {lock!r}")
        path = lock_path(lock)
        recipe = self._kazoo.Lock(path, identifier=self.session or "")
        self._pending.add(recipe)
        try:
            held = await self._call(lambda: self._acquire(recipe, path, timeout))
        finally:
            self._pending.discard(recipe)
        self._held[lock] = held
        return Grant(lock, sequence_of(held.node), f"{held.session_id:x}")

    def _acquire(self, recipe: Any, path: str, timeout: float) -> _Held:
        """The recipe's acquire; a timeout is ``fail`` only once the node is known gone."""
        try:
            got = recipe.acquire(blocking=True, timeout=timeout)
        except LockTimeout:
            got = False
        if got:
            session_id = self._session_id()
            if session_id is None or recipe.node is None:
                raise Indeterminate("granted, but the session is gone already")
            return _Held(recipe, str(recipe.node), session_id, self._lost_count)
        # The recipe deleted its node, best effort; it swallows errors. Make sure: a node left
        # behind could be granted later, with nobody knowing.
        node = recipe.node
        if node is not None and self._kazoo.exists(f"{path}/{node}") is not None:
            self._kazoo.delete(f"{path}/{node}")
        raise DefiniteFailure(f"not granted within {timeout:g}s (left the queue)")

    async def release(self, lock: str) -> None:
        held = self._held.pop(lock, None)
        if held is None:
            raise DefiniteFailure(f"does not hold {lock!r}")
        if self._lost_count != held.lost_count or self._session_id() != held.session_id:
            raise Indeterminate(
                "the session that held the lock expired: ZooKeeper released it at a time the "
                "client cannot know"
            )
        await self._call(lambda: self._delete_held(lock, held))

    def _delete_held(self, lock: str, held: _Held) -> None:
        try:
            self._kazoo.retry(self._kazoo.delete, f"{lock_path(lock)}/{held.node}")
        except NoNodeError:
            raise Indeterminate(
                "the lock node was already gone (session expired, or a retried delete): "
                "released at a time the client cannot know"
            ) from None

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo:
        if node is not None:
            raise DefiniteFailure("the zookeeper backend reads through the client's own session")
        return await self._call(lambda: self._owner(lock))

    def _owner(self, lock: str) -> OwnerInfo:
        path = lock_path(lock)
        try:
            children = self._kazoo.get_children(path)
        except NoNodeError:
            return OwnerInfo(lock, (), None)
        contenders = sorted(
            (sequence_of(child), child) for child in children if _SEQUENCE.search(child)
        )
        for sequence, child in contenders:
            try:
                data, _ = self._kazoo.get(f"{path}/{child}")
            except NoNodeError:
                continue  # released meanwhile: the next one holds it
            return OwnerInfo(lock, (data.decode("utf-8", errors="replace"),), sequence)
        return OwnerInfo(lock, (), None)

    async def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]:
        raise DefiniteFailure("the zookeeper backend does not offer lock watch events")
        yield  # pragma: no cover  (makes this an async generator)

    def lease_deadline(self) -> float | None:
        """Since when ZooKeeper may have expired the session, once that moment has passed.

        ``sync``: the leader was told of the session no earlier than T/4 + tick/2 before the
        latest answered sync was sent; ``ping``: the last time the server answered anything
        (kazoo's view). Either plus T, less the margin. A session kazoo saw expire is lost from
        that deadline or from the moment kazoo said so, whichever is earlier.
        """
        deadline = self._lease_start() + self.session_timeout * (1.0 - EXPIRY_MARGIN)
        now = time.monotonic()
        if now >= deadline:
            return deadline
        if self._lost_at is not None and any(
            self._lost_count != held.lost_count for held in self._held.values()
        ):
            return min(self._lost_at, now)
        return None

    def _lease_start(self) -> float:
        """When the service last knew of the session, at the earliest (see lease_deadline)."""
        if self.lease_from == "ping":
            return self._heard.last_heard
        return self._known_at

    async def stall(self, seconds: float) -> None:
        """Freeze the connection thread for ``seconds``: no pings, no replies read.

        To the servers the client is silent, as a process stopped by a GC pause is; the session
        expires after T and the lock goes to the next waiter.
        """
        self._heard.freeze()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._heard.thaw()

    async def close(self) -> None:
        """Stop the kazoo client (closing the session), in a thread of its own, bounded."""
        kazoo = self._kazoo
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        self._heard.thaw()
        for recipe in list(self._pending):
            recipe.cancel()

        def stop() -> None:
            if kazoo is not None:
                with contextlib.suppress(Exception):
                    kazoo.stop()
                with contextlib.suppress(Exception):
                    kazoo.close()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(stop), CLOSE_TIMEOUT_S)
        self._pool.shutdown(wait=False, cancel_futures=True)
