"""What every workload shares: the per-process plan, seeded randomness and op execution.

A workload is a Jepsen generator plus client logic. Each logical process follows a small plan
(for example acquire -> res-enter -> res-exit -> release); the runner asks for the next op,
performs it, and reports the outcome back with ``update`` so the plan can adapt (a failed acquire
skips the critical section, a read's value feeds the following write). Randomness is seeded per
process (test seed + process id), so a run's op sequence for a process does not depend on how the
processes interleave.

Beyond ``lockbench.protocols.Workload`` the runner uses these hooks: ``think`` (seconds to wait
before the next op), ``update``, ``op_timeout`` (ops that legitimately take long, such as a queued
acquire or a stall, get their own time added), ``node_of`` (the node an op targets),
``final_ops`` (run once after the faults are healed, e.g. the final read of a counter), and the
lease hooks ``lease_to_check`` / ``lease_lost``: before a critical-section step on a held lock
the runner asks the client whether its lease may have lapsed, records ``lease-lost`` if so, and
the workload then goes on as a careful client would (by default: no more resource accesses on that
lock, release).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from lockbench.history import OpType
from lockbench.protocols import DefiniteFailure, Invocation, LockClient, LockEvent
from workloads.resource import ResourceClient

WATCH_SETTLE_SECONDS = 0.5
"""Extra time a watcher keeps reading after its window, for events still in flight."""


@dataclass(frozen=True, slots=True)
class WorkloadContext:
    """What a workload knows about the test it runs in."""

    seed: int
    concurrency: int
    ttl: float
    nodes: tuple[str, ...]
    resource: ResourceClient | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A planned op and how long the process thinks before issuing it."""

    op: Invocation
    delay: float = 0.0


class UnsupportedByClient(DefiniteFailure):
    """The backend's client lacks an optional capability (e.g. stalling its keepalives)."""


# Steps that act as the holder of a lock: the lease must still be valid before each of them.
CRITICAL_SECTION_OPS = frozenset({"res-enter", "res-read", "res-write", "res-exit", "release"})
RESOURCE_ACCESS_OPS = frozenset({"res-enter", "res-read", "res-write", "res-exit"})


@dataclass(slots=True)
class HeldLock:
    """A lock a process was granted and has not released; whether its lapse was recorded."""

    lease_lost: bool = False


def acquire_op(lock: str, timeout: float, shared: bool = False) -> Invocation:
    return Invocation("acquire", lock, {"timeout": timeout, "shared": shared})


def release_op(lock: str) -> Invocation:
    return Invocation("release", lock, None)


def event_json(event: LockEvent) -> dict[str, Any]:
    return {
        "revision": event.revision,
        "kind": event.kind,
        "lock": event.lock,
        "session": event.session,
        "token": event.token,
    }


class BenchWorkload:
    """Base of the bundled workloads: plans per process, performs every documented op."""

    name: ClassVar[str]
    # The dataclass of its ``workload_options`` (parsed by lockbench.options.parse_options); the
    # runner builds the workload as ``cls(options, context)``.
    options_class: ClassVar[type[Any]]
    default_checkers: ClassVar[tuple[str, ...]]
    uses_resource: ClassVar[bool] = False
    # A careful client stops touching the resource once its lease may have lapsed; the
    # lease-expiry workload's stale holder deliberately does not (it tests fencing).
    stale_holder_keeps_going: ClassVar[bool] = False

    def __init__(self, context: WorkloadContext) -> None:
        self.context = context
        self._plans: dict[int, deque[Step]] = {}
        self._rngs: dict[int, random.Random] = {}
        self._held: dict[int, dict[str, HeldLock]] = {}

    # -- planning (subclasses) -----------------------------------------------------------

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        """The ops a process performs next, after its previous cycle ended."""
        raise NotImplementedError

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        """Adapt the rest of a process's plan to an outcome (default: nothing to adapt)."""

    # -- the runner's interface ------------------------------------------------------------

    def rng(self, process: int) -> random.Random:
        rng = self._rngs.get(process)
        if rng is None:
            rng = self._rngs[process] = random.Random(f"{self.context.seed}:{process}")
        return rng

    def _plan(self, process: int) -> deque[Step]:
        plan = self._plans.get(process)
        if plan is None:
            plan = self._plans[process] = deque()
        if not plan:
            plan.extend(self.begin_cycle(process, self.rng(process)))
        return plan

    def think(self, process: int) -> float:
        plan = self._plan(process)
        return plan[0].delay if plan else 0.0

    def next_op(self, process: int) -> Invocation | None:
        plan = self._plan(process)
        return plan.popleft().op if plan else None

    def update(self, process: int, op: Invocation, outcome: OpType, value: Any) -> None:
        if outcome == "info":
            # The process retires; forget its plan (its successor starts afresh).
            self._plans.pop(process, None)
            self._rngs.pop(process, None)
            self._held.pop(process, None)
            return
        if op.key is not None:
            if op.f == "acquire" and outcome == "ok":
                self._held.setdefault(process, {})[op.key] = HeldLock()
            elif op.f == "release":
                self._held.get(process, {}).pop(op.key, None)
        self.on_complete(process, op, outcome, value, self._plans.setdefault(process, deque()))

    # -- leases ------------------------------------------------------------------------------

    def lease_to_check(self, process: int) -> str | None:
        """The held lock whose lease must still be valid before the process's next step.

        None when the next step does not act as a holder, or its lapse is already recorded
        (``lease-lost`` is recorded once per grant).
        """
        plan = self._plan(process)
        if not plan:
            return None
        op = plan[0].op
        if op.f not in CRITICAL_SECTION_OPS or op.key is None:
            return None
        held = self._held.get(process, {}).get(op.key)
        if held is None or held.lease_lost:
            return None
        return op.key

    def held_locks(self, process: int) -> list[str]:
        """The locks the process holds whose lease lapse is not recorded yet (at the end of a
        run the runner asks each holder's client one last time)."""
        return [lock for lock, held in self._held.get(process, {}).items() if not held.lease_lost]

    def lease_lost(self, process: int, lock: str) -> None:
        """The runner recorded ``lease-lost`` for ``lock``: adapt the rest of the plan.

        A careful client (the default) touches the resource no more under that grant and goes
        straight to the release, which tells it whether the lock was still held.
        """
        held = self._held.get(process, {}).get(lock)
        if held is not None:
            held.lease_lost = True
        if self.stale_holder_keeps_going:
            return
        plan = self._plans.setdefault(process, deque())
        kept = [s for s in plan if not (s.op.key == lock and s.op.f in RESOURCE_ACCESS_OPS)]
        if not any(s.op.f == "release" and s.op.key == lock for s in kept):
            kept.insert(0, Step(release_op(lock)))
        plan.clear()
        plan.extend(kept)

    def op_timeout(self, op: Invocation, default: float) -> float:
        """The per-op timeout: the default plus any time the op is meant to take."""
        if isinstance(op.value, Mapping):
            for extra in ("timeout", "seconds", "duration"):
                if isinstance(op.value.get(extra), int | float):
                    return default + float(op.value[extra])
        return default

    def node_of(self, op: Invocation) -> str | None:
        """The node an op targets, when it names one (follower reads)."""
        if isinstance(op.value, Mapping) and isinstance(op.value.get("node"), str):
            return str(op.value["node"])
        return None

    def final_ops(self) -> Sequence[Invocation]:
        return ()

    async def perform(self, client: LockClient, op: Invocation) -> Any:
        """Run one op; the return value is the ok value (docs/history.md, 'Values by operation')."""
        value = op.value if isinstance(op.value, Mapping) else {}
        if op.f == "acquire":
            assert op.key is not None
            grant = await client.acquire(
                op.key, timeout=float(value["timeout"]), shared=bool(value.get("shared", False))
            )
            return grant.token
        if op.f == "release":
            assert op.key is not None
            await client.release(op.key)
            return None
        if op.f == "owner":
            assert op.key is not None
            owner = await client.owner(op.key, node=self.node_of(op))
            return {"holders": list(owner.holders), "token": owner.token}
        if op.f == "watch":
            return await self._watch(client, value)
        if op.f == "stall":
            stall = getattr(client, "stall", None)
            if stall is None:
                raise UnsupportedByClient(
                    f"{type(client).__name__} cannot suspend its keepalives (no stall method)"
                )
            await stall(float(value["seconds"]))
            return {"seconds": value["seconds"]}
        if op.f.startswith("res-") or op.f == "final-read":
            return await self._resource(client, op, value)
        raise DefiniteFailure(f"workload {self.name} does not know how to perform {op.f!r}")

    async def _watch(self, client: LockClient, value: Mapping[str, Any]) -> list[dict[str, Any]]:
        # Collect for ``duration`` plus a settle period: the event of a change that completed just
        # before the window closed may still be on its way (the service sends the reply and the
        # event at about the same time). The watches checker only requires events for changes
        # completed within ``duration`` of the invocation (docs/checkers.md).
        events: list[dict[str, Any]] = []
        stream = client.watch(str(value["prefix"]), from_revision=int(value["from_revision"]))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(value["duration"]) + WATCH_SETTLE_SECONDS):
                async for event in stream:
                    events.append(event_json(event))
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        return events

    async def _resource(
        self, client: LockClient, op: Invocation, value: Mapping[str, Any]
    ) -> dict[str, Any]:
        resource = self.context.resource
        if resource is None:
            raise DefiniteFailure(f"{op.f}: this test has no protected resource")
        kind = "final-read" if op.f == "final-read" else op.f.removeprefix("res-")
        return await resource.request(
            kind,
            op.key,
            token=value.get("token"),
            value=value.get("value"),
            client=client.session,
        )
