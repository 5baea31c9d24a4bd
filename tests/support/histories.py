"""Seeded simulations of lock and register services that write histories, for tests and benchmarks.

Each simulation runs a discrete-event model of a service (ops take effect atomically at a point
between their invocation and completion) and records what clients would see, including ``info``
ops that did or did not take effect, retired processes, and sessions that expire after a TTL. A
``bug_rate`` makes the service misbehave (grant a held lock, return a stale read), so the same
generator also yields histories a checker must reject.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lockbench.history import Op, OpType, Process

MS = 1_000_000


@dataclass(slots=True)
class _Recorder:
    ops: list[Op] = field(default_factory=list)

    def emit(
        self,
        time: int,
        process: Process,
        type: OpType,
        f: str,
        key: str | None,
        value: Any = None,
        session: str | None = None,
        error: str | None = None,
    ) -> None:
        self.ops.append(
            Op(len(self.ops), time, process, type, f, key, value, session=session, error=error)
        )


@dataclass(slots=True)
class _LockCall:
    process: int
    lock: str
    f: str
    fate: str  # "ok", "applied-info" (takes effect, client sees info), "lost-info" (never does)
    done: bool = False


def lock_history(  # noqa: C901, PLR0912, PLR0915 - a whole simulated lock service; its state is locals
    *,
    seed: int,
    ops: int,
    locks: int = 10,
    processes: int = 5,
    info_rate: float = 0.01,
    bug_rate: float = 0.0,
    ttl_ms: int = 200,
) -> list[Op]:
    """About ``ops`` acquire/release records (invoke + completion) on ``locks`` locks.

    With ``bug_rate`` > 0 an acquire of a held lock is sometimes granted anyway (a double grant).
    """
    rng = random.Random(seed)
    rec = _Recorder()
    lock_names = [f"lock-{i}" for i in range(locks)]
    holder: dict[str, int | None] = dict.fromkeys(lock_names)
    queue: dict[str, deque[_LockCall]] = {name: deque() for name in lock_names}
    token = 0
    events: list[tuple[int, int, str, Any]] = []
    seq = 0
    invocations = 0
    target_calls = max(1, ops // 2)

    def schedule(at: int, kind: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, payload))

    def start(at: int, process: int, f: str, lock: str) -> None:
        nonlocal invocations
        invocations += 1
        roll = rng.random()
        fate = "ok" if roll >= info_rate else ("applied-info" if roll < info_rate / 2 else "lost")
        call = _LockCall(process, lock, f, fate)
        value = {"timeout": 1.0, "shared": False} if f == "acquire" else None
        rec.emit(at, process, "invoke", f, lock, value)
        if fate == "lost":
            schedule(at + rng.randint(20, 60) * MS, "timeout", call)
        else:
            schedule(at + rng.randint(1, 3) * MS, "arrive", call)
            if fate == "applied-info":
                schedule(at + rng.randint(20, 60) * MS, "timeout", call)

    def grant(at: int, call: _LockCall) -> None:
        nonlocal token
        token += 1
        holder[call.lock] = call.process
        if call.fate == "ok":
            schedule(at + rng.randint(1, 3) * MS, "complete", (call, token))

    def release_lock(at: int, lock: str) -> None:
        holder[lock] = None
        while queue[lock]:
            waiter = queue[lock].popleft()
            if waiter.process in expired:
                continue
            grant(at, waiter)
            return

    def next_op(at: int, process: int) -> None:
        if invocations < target_calls:
            start(at + rng.randint(0, 5) * MS, process, "acquire", rng.choice(lock_names))

    expired: set[int] = set()
    for p in range(processes):
        next_op(0, p)
    while events:
        at, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            call = payload
            if call.done and call.fate == "ok":
                continue
            if call.f == "acquire":
                busy = holder[call.lock] is not None
                if not busy or (bug_rate and rng.random() < bug_rate):
                    grant(at, call)
                else:
                    queue[call.lock].append(call)
            else:
                ok = holder[call.lock] == call.process
                if ok:
                    release_lock(at, call.lock)
                if call.fate == "ok":
                    schedule(at + rng.randint(1, 3) * MS, "complete", (call, ok))
        elif kind == "complete":
            call, result = payload
            if call.done:
                continue
            call.done = True
            p = call.process
            session = f"s{p}"
            if call.f == "acquire":
                rec.emit(at, p, "ok", "acquire", call.lock, result, session=session)
                hold = rng.randint(1, 10) * MS
                schedule(at + hold, "release", call)
            else:
                if result:
                    rec.emit(at, p, "ok", "release", call.lock, None, session=session)
                else:
                    rec.emit(at, p, "fail", "release", call.lock, None, error="not the holder")
                next_op(at, p)
        elif kind == "release":
            call = payload
            start(at, call.process, "release", call.lock)
        elif kind == "timeout":
            call = payload
            if call.done:
                continue
            call.done = True
            p = call.process
            rec.emit(at, p, "info", call.f, call.lock, None, error="timeout")
            schedule(at + ttl_ms * MS, "expire", p)
            next_op(at, p + processes)
        elif kind == "expire":
            p = payload
            expired.add(p)
            for name in lock_names:
                if holder[name] == p:
                    release_lock(at, name)
    return rec.ops


@dataclass(slots=True)
class _RegisterCall:
    process: int
    f: str
    value: Any
    fate: str
    result: Any = None
    applied_ok: bool = True


def register_history(  # noqa: C901, PLR0915 - a whole simulated register; its state is locals
    *,
    seed: int,
    ops: int,
    processes: int = 5,
    info_rate: float = 0.01,
    bug_rate: float = 0.0,
    values: int = 5,
    keys: int = 1,
    cas: bool = True,
) -> list[Op]:
    """About ``ops`` read/write/cas ops on ``keys`` registers holding small integers.

    With ``bug_rate`` > 0 a read sometimes returns a value other than the current one (stale).
    """
    rng = random.Random(seed)
    rec = _Recorder()
    key_names = [f"r{i}" for i in range(keys)]
    state: dict[str, Any] = dict.fromkeys(key_names)
    events: list[tuple[int, int, str, Any]] = []
    seq = 0
    invocations = 0
    target_calls = max(1, ops // 2)
    fs = ["read", "write", "cas"] if cas else ["read", "write"]

    def schedule(at: int, kind: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, payload))

    def start(at: int, process: int) -> None:
        nonlocal invocations
        if invocations >= target_calls:
            return
        invocations += 1
        f = rng.choice(fs)
        key = rng.choice(key_names)
        value: Any = None
        if f == "write":
            value = rng.randrange(values)
        elif f == "cas":
            value = [rng.randrange(values), rng.randrange(values)]
        roll = rng.random()
        fate = "ok" if roll >= info_rate else ("applied-info" if roll < info_rate / 2 else "lost")
        call = _RegisterCall(process, f, value, fate)
        rec.emit(at, process, "invoke", f, key, value)
        if fate != "lost":
            schedule(at + rng.randint(0, 4) * MS + rng.randint(0, MS), "apply", (call, key))
        schedule(at + 5 * MS + rng.randint(0, 5) * MS, "complete", (call, key))

    for p in range(processes):
        start(rng.randint(0, 2) * MS, p)
    while events:
        at, _, kind, payload = heapq.heappop(events)
        call, key = payload
        if kind == "apply":
            if call.f == "read":
                call.result = state[key]
                if bug_rate and rng.random() < bug_rate:
                    call.result = (call.result or 0) + 1 + rng.randrange(values)
            elif call.f == "write":
                state[key] = call.value
                call.result = call.value
            else:
                old, new = call.value
                call.applied_ok = state[key] == old
                if call.applied_ok:
                    state[key] = new
                call.result = call.value
        else:
            p = call.process
            if call.fate != "ok":
                rec.emit(at, p, "info", call.f, key, None, error="timeout")
                start(at + rng.randint(0, 2) * MS, p + processes)
                continue
            if call.f == "cas" and not call.applied_ok:
                rec.emit(at, p, "fail", "cas", key, call.value, error="cas mismatch")
            else:
                rec.emit(at, p, "ok", call.f, key, call.result)
            start(at + rng.randint(0, 2) * MS, p)
    return rec.ops
