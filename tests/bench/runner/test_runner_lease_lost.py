"""A holder whose keepalives stop loses its lock to the next waiter; the history says so.

The real runner (``ClientDriver``/``ClientProcess``), the in-process memory backend and the
fenced protected resource run the mutex workload on one lock with two processes. Once one holds
the lock its keepalives are suspended from outside the workload (a GC pause of its keepalive
thread, say): there is no ``stall`` op in the history. The service expires the session and grants
the lock to the other process while the holder still believes it holds it. Before its next step
the holder learns its lease lapsed and records ``lease-lost``; the checkers then find the run
valid, and the same history without that record invalid (the false alarm this record removes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.backends.memory import MemoryLockClient
from bench.checking import run_checkers
from bench.runner.process import LEASE_LOST, ClientProcess
from lockbench.history import Op, pair_calls, read_history
from lockbench.history_writer import HistoryWriter
from tests.support.memory_runner import mutex_on_memory
from tests.support.ports import free_port
from workloads.resource import ResourceClient, ResourceServer

TTL_S = 0.3
LOCK = "lock/0"
# Bounds on each phase, so a broken build fails instead of hanging.
PHASE_TIMEOUT_S = 8.0


async def until(condition: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def run_with_stopped_keepalives(
    tmp_path: Path, *, stop_at_next_grant: bool = False
) -> list[Op]:
    """The run above; with ``stop_at_next_grant`` the test's time runs out as soon as the
    other process is granted the lock, before the stalled holder takes another step."""
    server = ResourceServer("fenced", None)
    await server.start("127.0.0.1", free_port())
    resource = ResourceClient(*server.address)
    # the hold (jittered 1.0-3.0 s) outlasts the TTL many times over: the lapse is seen in it
    history = HistoryWriter(tmp_path / "history.jsonl")
    run = mutex_on_memory(
        tmp_path,
        history,
        processes=2,
        mutex_options={"locks": 1, "hold": 2.0, "think": 0.01, "acquire_timeout": 1.5},
        resource=resource,
        seed=4,
        ttl=TTL_S,
        op_timeout=2.0,
    )
    backend, driver, stats, stop = run.backend, run.driver, run.stats, run.stop
    processes = [ClientProcess(driver, slot) for slot in range(2)]
    runs = [asyncio.create_task(p.run()) for p in processes]
    pause: asyncio.Task[None] | None = None
    try:
        await until(lambda: backend.service.owner(LOCK).holders, "nobody was granted the lock")
        (holder_session,) = backend.service.owner(LOCK).holders
        holder = next(p for p in processes if p.client and p.client.session == holder_session)
        assert isinstance(holder.client, MemoryLockClient)
        pause = asyncio.create_task(holder.client.stall(TTL_S * 4))
        if stop_at_next_grant:
            await until(
                lambda: backend.service.owner(LOCK).holders not in ((), (holder_session,)),
                "the lock never passed on",
            )
        else:
            await until(lambda: stats.retired >= 1, "the holder never learned its lease lapsed")
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
        for process in processes:  # what TestRun does once every process has stopped
            process.check_leases_at_end()
        if pause is not None:
            await asyncio.gather(pause, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in processes))
        await driver.drain()
        run.close()
        history.close()
        await resource.close()
        await server.stop()
    return read_history(tmp_path / "history.jsonl")


@pytest.fixture(scope="module")
def lapsed_run(tmp_path_factory: pytest.TempPathFactory) -> list[Op]:
    return asyncio.run(run_with_stopped_keepalives(tmp_path_factory.mktemp("lease-lost")))


def test_the_lapsed_holder_records_lease_lost_once_with_the_deadline_that_passed(
    lapsed_run: list[Op],
) -> None:
    history = lapsed_run
    assert not any(op.f == "stall" for op in history)
    lost = [op for op in history if op.f == LEASE_LOST]
    assert [op.type for op in lost] == ["invoke", "ok"]
    invoke, ok = lost
    holder = invoke.process
    grant = next(
        op for op in history if op.process == holder and op.f == "acquire" and op.type == "ok"
    )
    since = ok.value["since"]
    assert ok.value == invoke.value
    assert ok.session == grant.session == invoke.session
    # the deadline lies after the grant (the lease was safe then) and before the record
    assert grant.time < since <= invoke.time
    # the other process was granted the lock after the deadline, before the holder's release
    other = next(
        op
        for op in history
        if op.f == "acquire" and op.type == "ok" and op.process != holder and op.index > grant.index
    )
    release = next(
        op for op in history if op.process == holder and op.f == "release" and op.type != "invoke"
    )
    assert since <= other.time
    assert other.index < release.index
    # the release answered unknown (the session is gone) and retired the holder
    assert release.type == "info"


def test_the_careful_holder_does_not_touch_the_resource_after_the_lapse(
    lapsed_run: list[Op],
) -> None:
    history = lapsed_run
    lost = next(op for op in history if op.f == LEASE_LOST)
    after = [op for op in history if op.process == lost.process and op.index > lost.index]
    assert {op.f for op in after} <= {LEASE_LOST, "release"}


def test_the_run_is_valid_with_the_record_and_a_double_grant_without_it(
    lapsed_run: list[Op],
) -> None:
    checkers = ["linearizable", "mutual-exclusion", "fencing"]
    _, results = run_checkers(lapsed_run, checkers, {})
    assert {results[n].verdict for n in checkers} == {"valid"}, {
        n: r.anomalies for n, r in results.items()
    }
    without = [op for op in lapsed_run if op.f != LEASE_LOST]
    pair_calls(without)  # still a well-formed history
    _, results = run_checkers(without, ["linearizable"], {})
    assert results["linearizable"].verdict == "invalid"


def test_a_holder_stopped_by_the_time_limit_records_its_lapsed_lease(tmp_path: Path) -> None:
    # The time limit ends while the stalled holder holds the lock and the other process has just
    # been granted it: the holder takes no next step, so only the end-of-run check can record
    # the lapse. (Seen in a real isolate-leader run as a false "two holders".)
    history = asyncio.run(run_with_stopped_keepalives(tmp_path, stop_at_next_grant=True))
    lost = [op for op in history if op.f == LEASE_LOST and op.type == "ok"]
    assert len(lost) == 1
    checkers = ["linearizable", "mutual-exclusion", "fencing"]
    _, results = run_checkers(history, checkers, {})
    assert {results[n].verdict for n in checkers} == {"valid"}, {
        n: r.anomalies for n, r in results.items()
    }
    without = [op for op in history if op.f != LEASE_LOST]
    _, results = run_checkers(without, ["linearizable"], {})
    assert results["linearizable"].verdict == "invalid"
