"""Locks on Redis servers: the Redlock algorithm, as its authors specify it, for N servers.

The specification is the Redis documentation's "Distributed Locks with Redis" page. Its rules,
each a function or step here (tests/bench/backends/test_redlock_rules.py proves each one against
real servers):

1. The client takes the current time, then tries to set the lock on all N instances, with the
   same key and a random value, ``SET key value NX PX ttl``, each with a timeout small compared
   to the TTL so a dead instance costs little (``instance_timeout``). The page allows talking to
   the instances at once ("multiplexing"), which this client does.
2. The lock is acquired only if it was set on a majority, ``N // 2 + 1`` (``quorum``), and the
   time elapsed since step 1 is less than the lock's validity (``acquired``).
3. The validity left is the TTL minus the elapsed time minus the clock drift allowance: 1% of
   the TTL plus 2 ms for Redis' expiry precision (``validity_ms``, ``CLOCK_DRIFT_FACTOR``).
4. If the lock was not acquired, the client unlocks every instance, even those it believes it
   did not lock (a SET may have landed after its timeout).
5. After a failure the client retries after a random delay, so clients contending at once
   desynchronise (``retry_delay``, jittered within [0.5, 1.5] of it), until its timeout.
6. Release: unlock on every instance, with a script that deletes the key only if it still holds
   this client's value.
7. Extension: a script on every instance that resets the TTL only if the key holds this client's
   value; the lock counts as extended only on a majority and within the validity time.

The ``redis`` backend (one server) uses the same client with N = 1 and a fencing token from
``INCR`` on a per-lock counter after a successful SET: the usual single-instance lock. The
Redlock backend has no fencing token (the algorithm has none): tests with it use an unfenced
resource.

Outcomes (docs/backends.md): an acquire fails definitely only when, after an attempt's unlock,
fewer than a quorum of instances can still hold this client's value (the others answered the
unlock): a value stranded on a minority is no lock. A release is ``ok`` only
when this client's value was deleted from a quorum: values are only ever written at acquire, so
finding them on a quorum at release shows the lock was held all along; otherwise the lock was
lost at a time the client cannot know (``info``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from lockbench.protocols import DefiniteFailure, Grant, Indeterminate, LockEvent, OwnerInfo

# The specification's drift allowance: 1% of the TTL, plus 2 ms for Redis' expiry precision.
CLOCK_DRIFT_FACTOR = 0.01
DRIFT_FIXED_MS = 2
# Bound on one request to one instance outside the acquire's SET (unlock, extend, INCR, GET).
REQUEST_TIMEOUT_S = 1.0

UNLOCK_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end
"""
EXTEND_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
else
    return 0
end
"""

# One instance's answer: True (done), False (the server refused: not set, not ours), NOT_SENT
# (no connection: certainly not done, and says nothing about what the server holds), None
# (unknown: the command may have run).
NOT_SENT: Literal["not-sent"] = "not-sent"
Answer = bool | None | Literal["not-sent"]


def quorum(instances: int) -> int:
    """Rule 2: a majority of the N instances."""
    return instances // 2 + 1


def drift_ms(ttl_ms: int) -> float:
    """Rule 3: the clock drift allowance for a TTL."""
    return ttl_ms * CLOCK_DRIFT_FACTOR + DRIFT_FIXED_MS


def validity_ms(ttl_ms: int, elapsed_ms: float) -> float:
    """Rule 3: how long the lock is still valid after acquiring took ``elapsed_ms``."""
    return ttl_ms - elapsed_ms - drift_ms(ttl_ms)


def acquired(answers: Sequence[Answer], ttl_ms: int, elapsed_ms: float) -> bool:
    """Rule 2: set on a majority, with validity left."""
    locked = sum(1 for a in answers if a is True)
    return locked >= quorum(len(answers)) and validity_ms(ttl_ms, elapsed_ms) > 0


def retry_delay(rng: random.Random, mean: float) -> float:
    """Rule 5: a random delay around ``mean`` (uniform in [0.5, 1.5] x mean)."""
    return mean * (0.5 + rng.random())


def never_sent(error: BaseException) -> bool:
    """True when a call failed because no connection could be made: the server refused it (no
    server listens: killed, not yet restarted), so the command certainly did not run there."""
    cause = error if isinstance(error, ConnectionRefusedError) else error.__cause__
    return isinstance(cause, ConnectionRefusedError)


@dataclass(frozen=True, slots=True)
class RedlockSettings:
    """The algorithm's parameters (backend_options of redis and redlock)."""

    instance_timeout: float = 0.05
    retry_delay: float = 0.2
    fencing_counter: bool = False


@dataclass(slots=True)
class _Held:
    value: str
    deadline: float  # time.monotonic() at which the validity ends
    token: int | None
    acquired_on: str = ""  # each instance's answer to the SET, for messages


class Instance:
    """One Redis server: a connection with redis-py's retries off (a retried SET NX would
    answer "not set" for a value the first attempt did set)."""

    def __init__(self, endpoint: str) -> None:
        host, port = endpoint.rsplit(":", 1)
        self.endpoint = endpoint
        self.client = aioredis.Redis(
            host=host,
            port=int(port),
            socket_timeout=REQUEST_TIMEOUT_S,
            socket_connect_timeout=REQUEST_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    async def ask(self, timeout: float, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """The call's reply; raises TimeoutError or RedisError when the answer is unknown."""
        async with asyncio.timeout(timeout):
            return await call(self.client)

    async def answer(self, timeout: float, call: Callable[[Any], Awaitable[Any]]) -> Answer:
        """True/False from a reply that means done/refused; None if no reply came."""
        try:
            reply = await self.ask(timeout, call)
        except ResponseError:
            return False  # the server refused the command: it did nothing
        except (TimeoutError, RedisError, OSError) as exc:
            return NOT_SENT if never_sent(exc) else None
        return bool(reply)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


class RedlockClient:
    """One logical process's locks on N Redis instances (a lockbench.protocols.LockClient)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ttl: float,
        process: int,
        settings: RedlockSettings = RedlockSettings(),
        seed: int | None = None,
    ) -> None:
        self.instances = [Instance(endpoint) for endpoint in endpoints]
        self.ttl_ms = max(1, round(ttl * 1000))
        self.process = process
        self.settings = settings
        self._session = f"p{process}-{uuid.uuid4().hex[:12]}"
        self._attempt = 0
        self._rng = random.Random(seed)
        self._held: dict[str, _Held] = {}
        self._lost: dict[str, float] = {}  # lock -> when an extension found it gone
        self._keepalive: asyncio.Task[None] | None = None
        # (start, delay before the next attempt) of the last acquire's attempts, for the tests
        self.last_attempts: list[tuple[float, float]] = []

    @property
    def session(self) -> str | None:
        return self._session

    # -- the algorithm ---------------------------------------------------------------------

    async def _on_all(self, timeout: float, call: Callable[[Any], Awaitable[Any]]) -> list[Answer]:
        return list(await asyncio.gather(*(i.answer(timeout, call) for i in self.instances)))

    async def _set_all(self, lock: str, value: str) -> list[Answer]:
        """Rule 1: ``SET lock value NX PX ttl`` on every instance at once."""
        return await self._on_all(
            self.settings.instance_timeout,
            lambda c: c.set(lock, value, nx=True, px=self.ttl_ms),
        )

    async def _unlock_all(self, lock: str, value: str) -> list[Answer]:
        """Rules 4 and 6: compare-and-delete on every instance."""
        return await self._on_all(
            REQUEST_TIMEOUT_S, lambda c: c.eval(UNLOCK_SCRIPT, 1, lock, value)
        )

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant:
        if shared:
            raise DefiniteFailure("Redis locks have no shared mode")
        if lock in self._held:
            raise DefiniteFailure(f"{lock}: this client already holds it")
        give_up = time.monotonic() + timeout
        self.last_attempts = []
        while True:
            self._attempt += 1
            value = f"{self._session}/{self._attempt}"
            start = time.monotonic()
            answers = await self._set_all(lock, value)
            elapsed_ms = (time.monotonic() - start) * 1000
            if acquired(answers, self.ttl_ms, elapsed_ms):
                deadline = start + validity_ms(self.ttl_ms, 0) / 1000
                return await self._granted(lock, value, deadline, self._describe(answers))
            unlocked = await self._unlock_all(lock, value)
            maybe_ours = [
                i
                for i, (a, u) in enumerate(zip(answers, unlocked, strict=True))
                if u is None and (a is True or a is None)  # a SET that may have run, not undone
            ]
            delay = retry_delay(self._rng, self.settings.retry_delay)
            self.last_attempts.append((start, delay))
            if len(maybe_ours) >= quorum(len(answers)):
                # a quorum did not answer the unlock: our value may be on a majority
                raise Indeterminate(
                    f"{lock}: not acquired, and {len(maybe_ours)} instance(s) did not answer "
                    f"the unlock (locked on {sum(a is True for a in answers)}, "
                    f"quorum {quorum(len(answers))}, {elapsed_ms:.0f} ms)"
                )
            if time.monotonic() + delay >= give_up:
                raise DefiniteFailure(
                    f"{lock}: not acquired within {timeout:g}s "
                    f"({len(self.last_attempts)} attempt(s); quorum {quorum(len(answers))})"
                )
            await asyncio.sleep(delay)

    async def _granted(self, lock: str, value: str, deadline: float, answers: str) -> Grant:
        token = None
        if self.settings.fencing_counter:
            try:
                token = int(
                    await self.instances[0].ask(
                        REQUEST_TIMEOUT_S, lambda c: c.incr(f"{lock}:token")
                    )
                )
            except (TimeoutError, RedisError, OSError) as exc:
                self._held[lock] = _Held(value, deadline, None, answers)
                raise Indeterminate(f"{lock}: locked, but INCR of its token failed: {exc}") from exc
        self._held[lock] = _Held(value, deadline, token, answers)
        self._lost.pop(lock, None)
        self._ensure_keepalive()
        return Grant(lock, token, self._session)

    async def release(self, lock: str) -> None:
        held = self._held.pop(lock, None)
        self._lost.pop(lock, None)
        if held is None:
            raise DefiniteFailure(f"{lock}: this client does not hold it")
        answers = await self._unlock_all(lock, held.value)
        deleted = sum(1 for a in answers if a is True)
        if deleted < quorum(len(answers)):
            unknown = sum(1 for a in answers if a is None)
            raise Indeterminate(
                f"{lock}: this client's value was on {deleted} instance(s) at release "
                f"({unknown} did not answer; quorum {quorum(len(answers))}): the lock was lost "
                f"at a time this client cannot know (release: {self._describe(answers)}; "
                f"acquire: {held.acquired_on})"
            )

    def _describe(self, answers: Sequence[Answer]) -> str:
        """Each instance's answer, for messages: what a user needs to see where the lock went."""
        words = {True: "yes", False: "no", None: "unknown", NOT_SENT: "down"}
        return ", ".join(
            f"{i.endpoint} {words[a]}" for i, a in zip(self.instances, answers, strict=True)
        )

    # -- extension (rule 7) and the lease --------------------------------------------------

    def _ensure_keepalive(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Extend every held lock every TTL/3 while its validity lasts."""
        while self._held:
            await asyncio.sleep(self.ttl_ms / 3000)
            for lock in list(self._held):
                await self._extend(lock)

    async def _extend(self, lock: str) -> None:
        held = self._held.get(lock)
        if held is None or lock in self._lost or time.monotonic() >= held.deadline:
            return
        start = time.monotonic()
        answers = await self._on_all(
            self.settings.instance_timeout,
            lambda c: c.eval(EXTEND_SCRIPT, 1, lock, held.value, self.ttl_ms),
        )
        elapsed_ms = (time.monotonic() - start) * 1000
        if acquired(answers, self.ttl_ms, elapsed_ms) and start < held.deadline:
            held.deadline = max(held.deadline, start + validity_ms(self.ttl_ms, 0) / 1000)
        elif sum(1 for a in answers if a is False) >= quorum(len(answers)):
            self._lost.setdefault(lock, time.monotonic())  # a majority lacks our value: gone

    def lease_deadline(self) -> float | None:
        """Since when a held lock may be gone: the earliest validity end once passed, or the
        moment an extension found a majority without this client's value, if earlier."""
        if not self._held:
            return None
        now = time.monotonic()
        moments = [h.deadline for h in self._held.values() if h.deadline <= now]
        moments += [self._lost[lock] for lock in self._held if lock in self._lost]
        return min(moments) if moments else None

    async def stall(self, seconds: float) -> None:
        """Suspend extensions for ``seconds`` (a process frozen by a GC pause)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        await asyncio.sleep(seconds)
        if self._held:
            self._ensure_keepalive()

    # -- reads -----------------------------------------------------------------------------

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo:
        """The value held on a quorum of instances (the first instance for N = 1)."""
        try:
            values = await asyncio.gather(
                *(i.ask(REQUEST_TIMEOUT_S, lambda c: c.get(lock)) for i in self.instances)
            )
            token = None
            if self.settings.fencing_counter:
                raw = await self.instances[0].ask(
                    REQUEST_TIMEOUT_S, lambda c: c.get(f"{lock}:token")
                )
                token = None if raw is None else int(raw)
        except (TimeoutError, RedisError, OSError) as exc:
            raise Indeterminate(f"owner {lock}: {exc}") from exc
        for value in set(values):
            if value is not None and values.count(value) >= quorum(len(values)):
                return OwnerInfo(lock, (str(value).rsplit("/", 1)[0],), token)
        return OwnerInfo(lock, (), None)

    async def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]:
        """Not offered: Redis keeps no ordered history of lock grants to watch."""
        raise DefiniteFailure("Redis locks offer no watches")
        yield  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        """Stop extending and release what is held (best effort), then close the connections."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        for lock, held in list(self._held.items()):
            with contextlib.suppress(Exception):
                await self._unlock_all(lock, held.value)
        self._held.clear()
        for instance in self.instances:
            await instance.close()
