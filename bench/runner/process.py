"""Logical client processes: Jepsen's invoke -> ok/fail/info discipline, one op at a time.

Each of the test's ``concurrency`` slots runs one logical process. A process records an invoke,
performs the op under the per-op timeout, and records exactly one completion:

- ``ok`` when the op returned, ``fail`` when the client raised ``DefiniteFailure`` (it certainly
  did not happen);
- ``info`` for ``Indeterminate``, a timeout or any other exception: the op may have happened, or
  may still happen. The process is then retired (its client is closed in the background) and a
  fresh process id, ``old id + concurrency``, takes the slot with a fresh client.

Before a step that acts as the holder of a lock (a resource access, the release) the process asks
its client whether the lease may have lapsed (``lockbench.protocols.LeaseAwareClient``); if so it
records ``lease-lost`` with the history time of the deadline that passed, once per grant, so the
checkers know the service may have released the lock from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lockbench.history import OpType, Process
from lockbench.protocols import (
    Backend,
    Cluster,
    DefiniteFailure,
    Indeterminate,
    Invocation,
    LockClient,
    lease_deadline_of,
)
from workloads.base import BenchWorkload
from workloads.resource import RefusedAccess

log = logging.getLogger(__name__)

# Seconds between attempts to open a client when the service is unreachable.
REOPEN_BACKOFF_S = 0.5
# Bound on closing a retired client (its session may be stuck behind a partition).
CLOSE_TIMEOUT_S = 5.0
# The history op saying a holder's lease may have lapsed (docs/history.md).
LEASE_LOST = "lease-lost"


class HistorySink(Protocol):
    """Where records go: the run's history writer, or a counting sink in the benchmark."""

    start_ns: int

    def now(self) -> int: ...

    def append(
        self,
        process: Process,
        type: OpType,
        f: str,
        key: str | None = None,
        value: Any = None,
        **optional: Any,
    ) -> object: ...

    def close(self) -> None: ...


@dataclass
class RunStats:
    """Live counters for the progress display and the final summary."""

    invokes: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    open_failures: int = 0
    retired: int = 0
    leases_lost: int = 0
    active_faults: dict[str, Any] = field(default_factory=dict)
    leader: str | None = None
    phase: str = "setting up"

    def count(self, outcome: OpType) -> None:
        if outcome == "ok":
            self.ok += 1
        elif outcome == "fail":
            self.fail += 1
        else:
            self.info += 1

    @property
    def completed(self) -> int:
        return self.ok + self.fail + self.info


@dataclass
class ClientDriver:
    """What every process shares: the workload, the backend, the history and the settings."""

    workload: BenchWorkload
    backend: Backend
    cluster: Cluster
    history: HistorySink
    stats: RunStats
    concurrency: int
    op_timeout: float
    ttl: float
    stop: asyncio.Event
    rate: float | None = None
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def node_for(self, process: int) -> str:
        nodes = self.cluster.nodes
        return nodes[process % len(nodes)].name

    async def open_client(self, process: int) -> LockClient | None:
        """A client for ``process``, retrying while the service is unreachable (None: stopped)."""
        node = self.cluster.node(self.node_for(process))
        while not self.stop.is_set():
            try:
                async with asyncio.timeout(self.op_timeout):
                    return await self.backend.open_client(
                        self.cluster, node, ttl=self.ttl, process=process
                    )
            except Exception as exc:
                self.stats.open_failures += 1
                log.debug("process %d: cannot open a client on %s: %s", process, node.name, exc)
                await sleep_unless(self.stop, REOPEN_BACKOFF_S)
        return None

    async def execute(
        self, client: LockClient, process: int, op: Invocation, node: str | None
    ) -> tuple[OpType, Any]:
        """Record the invoke, perform the op, record and return its one completion."""
        workload = self.workload
        target = workload.node_of(op) or node
        self.history.append(process, "invoke", op.f, op.key, op.value, node=target)
        self.stats.invokes += 1
        outcome: OpType
        error: str | None = None
        try:
            async with asyncio.timeout(workload.op_timeout(op, self.op_timeout)):
                value = await workload.perform(client, op)
            outcome = "ok"
        except RefusedAccess as exc:
            outcome, value, error = "fail", exc.value, exc.error
        except DefiniteFailure as exc:
            outcome, value, error = "fail", None, describe(exc)
        except TimeoutError:
            outcome, value = "info", None
            error = f"timeout: no answer within {workload.op_timeout(op, self.op_timeout):g}s"
        except Indeterminate as exc:
            outcome, value, error = "info", None, describe(exc)
        except asyncio.CancelledError:
            self.history.append(
                process, "info", op.f, op.key, None, node=target, error="interrupted"
            )
            self.stats.count("info")
            raise
        except Exception as exc:  # anything unexpected is unknown, never assumed to have failed
            outcome, value, error = "info", None, describe(exc)
        self.history.append(
            process,
            outcome,
            op.f,
            op.key,
            value,
            node=target,
            error=error,
            session=client.session,
        )
        self.stats.count(outcome)
        workload.update(process, op, outcome, value)
        return outcome, value

    def check_lease(self, client: LockClient, process: int, node: str | None) -> bool:
        """Record ``lease-lost`` if the process's next step needs a lease that may have lapsed.

        ``since`` is the lapsed deadline on the history's clock (both are time.monotonic).
        Returns whether it recorded one (then the workload has adapted its plan).
        """
        lock = self.workload.lease_to_check(process)
        if lock is None:
            return False
        return self._record_lapse(client, process, lock, node)

    def check_leases_at_end(self, client: LockClient, process: int) -> None:
        """Once every process has stopped, record ``lease-lost`` for each lock the process
        still holds whose lease lapsed. A holder stopped by the time limit takes no next step,
        so without this the service's correct expiry of its session (and the grant to a
        waiter that followed) would read as two holders."""
        for lock in self.workload.held_locks(process):
            self._record_lapse(client, process, lock, self.node_for(process))

    def _record_lapse(self, client: LockClient, process: int, lock: str, node: str | None) -> bool:
        deadline = lease_deadline_of(client)
        if deadline is None:
            return False
        value = {"since": round(deadline * 1e9) - self.history.start_ns}
        session = client.session
        self.history.append(process, "invoke", LEASE_LOST, lock, value, node=node, session=session)
        self.history.append(process, "ok", LEASE_LOST, lock, value, node=node, session=session)
        self.stats.leases_lost += 1
        self.workload.lease_lost(process, lock)
        return True

    def retire(self, client: LockClient) -> None:
        """Close a retired process's client in the background (it may hang behind a fault)."""
        self.stats.retired += 1
        task = asyncio.get_running_loop().create_task(close_quietly(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self) -> None:
        """Wait for background closes (each bounded by CLOSE_TIMEOUT_S)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class ClientProcess:
    """One concurrency slot. ``process`` is the current logical process id of the slot.

    ``run`` returns when the test stops; the client stays open until ``close``.
    """

    def __init__(self, driver: ClientDriver, slot: int) -> None:
        self.driver = driver
        self.slot = slot
        self.process = slot
        self.client: LockClient | None = None

    async def run(self) -> None:
        driver = self.driver
        interval = driver.concurrency / driver.rate if driver.rate else 0.0
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        while not driver.stop.is_set():
            if self.client is None:
                self.client = await driver.open_client(self.process)
                if self.client is None:
                    return
            delay = driver.workload.think(self.process)
            if interval:
                next_start = max(next_start + interval, loop.time())
                delay = max(delay, next_start - loop.time())
            if delay > 0:
                await sleep_unless(driver.stop, delay)
                if driver.stop.is_set():
                    return
            else:
                # Yield even without think time: a backend that answers without awaiting
                # anything would otherwise starve every other task (timers, the nemesis).
                await asyncio.sleep(0)
            node = driver.node_for(self.process)
            driver.check_lease(self.client, self.process, node)
            op = driver.workload.next_op(self.process)
            if op is None:
                return
            outcome, _ = await driver.execute(self.client, self.process, op, node)
            if outcome == "info":
                driver.retire(self.client)
                self.client = None
                self.process += driver.concurrency

    def check_leases_at_end(self) -> None:
        """Record lapsed leases of the locks still held (see ClientDriver.check_leases_at_end)."""
        if self.client is not None:
            self.driver.check_leases_at_end(self.client, self.process)

    async def close(self) -> None:
        """Close the client, only once every process has stopped.

        Closing a session releases its locks, and that release is not in the history; done
        while other processes still wait for those locks, it would hand them a lock the history
        says is still held.
        """
        if self.client is not None:
            await close_quietly(self.client)
            self.client = None


async def run_final_ops(
    driver: ClientDriver, process: int, ops: Sequence[Invocation], *, attempts: int = 3
) -> None:
    """Run the workload's final ops (after healing) with a fresh process; retry unknowns."""
    if not ops:
        return
    client = await driver.open_client(process)
    if client is None:
        log.error("final ops skipped: no client could be opened")
        return
    try:
        for op in ops:
            for _ in range(attempts):
                outcome, _ = await driver.execute(client, process, op, driver.node_for(process))
                if outcome == "ok":
                    break
                if outcome == "info":
                    driver.retire(client)
                    process += driver.concurrency
                    reopened = await driver.open_client(process)
                    if reopened is None:
                        return
                    client = reopened
    finally:
        await close_quietly(client)


async def close_quietly(client: LockClient) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await client.close()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up early when ``stop`` is set (cheap plain sleep for short delays)."""
    if seconds <= 0.25:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
