"""Automatic snapshots of a big state are serialised in a forked child (free ports): the
event loop keeps its pace and the leader its leadership, a restarted replica comes back from the
child's snapshot, a killed child costs only that snapshot, and stop() leaves no child behind."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from reference_impl.server import snapshotter as snapshotter_module
from reference_impl.server.replica import Replica
from reference_impl.server.snapshotter import Snapshotter
from tests.reference_impl.replica.replica_testing import eventually, run, running, single_leader
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

BASE_ITEMS = 200_000
"""Rows of the preloaded table: its readable (indented) JSON takes ~0.3 s to produce here, in
Python code that holds the GIL throughout: three times the loop stall this file allows."""

MAX_LOOP_STALL = 0.1
"""The loop stall allowed on an idle machine. Under load the scheduler alone can exceed it, so
the check is a ratio within the run: the worst stall stays below half of the serialisation the
child did (which the loop would have spent in one piece without the fork)."""


class TableMachine:
    """A deterministic state machine with a big state: a preloaded table (the same on every
    replica) plus the applied commands. Its snapshot is indented JSON: slow, real work."""

    def __init__(self, base: Sequence[Sequence[object]] = ()) -> None:
        self.base = base
        self.commands: list[str] = []
        self.restored_from: int | None = None

    def apply(self, index: int, data: bytes) -> Any:
        self.commands.append(data.decode())
        return len(self.commands)

    def snapshot(self) -> bytes:
        return json.dumps({"base": self.base, "commands": self.commands}, indent=1).encode()

    def restore(self, data: bytes, index: int) -> None:
        body = json.loads(data)
        self.base, self.commands = body["base"], body["commands"]
        self.restored_from = index


@pytest.fixture(scope="module")
def table() -> Iterator[tuple[tuple[str, int, str], ...]]:
    rows = tuple((f"item/{i}", i, f"value-{i % 97}") for i in range(BASE_ITEMS))
    # Out of the cyclic GC's way: a full collection walking it would itself stall the loop.
    gc.collect()
    gc.freeze()
    try:
        yield rows
    finally:
        gc.unfreeze()


def _replicas(
    root: Path, base_port: int, size: int, machines: dict[str, TableMachine], **options: Any
) -> dict[str, Replica]:
    peers = {f"n{i}": ("127.0.0.1", base_port + i) for i in range(1, size + 1)}
    return {
        node_id: Replica(node_id, peers, root / node_id, machines[node_id], **options)
        for node_id in peers
    }


class LoopStallMonitor:
    """The longest the event loop took beyond a 5 ms sleep: how long nothing else could run."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - started - 0.005)

    def __enter__(self) -> LoopStallMonitor:
        self._task = asyncio.create_task(self._watch())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


def test_big_snapshots_leave_the_loop_responsive_and_the_leader_in_place_and_restore_on_restart(
    tmp_path: Path, table: tuple[tuple[str, int, str], ...]
) -> None:
    async def scenario() -> None:
        machines = {f"n{i}": TableMachine(table) for i in (1, 2, 3)}
        base_port = free_port_block(4)
        replicas = _replicas(tmp_path, base_port, 3, machines, snapshot_every=100)
        async with running(replicas.values()):
            leader = await single_leader(replicas.values())
            changes = {r.id: r.metrics.leader_changes for r in replicas.values()}
            with LoopStallMonitor() as monitor:
                for batch in range(7):
                    await asyncio.gather(
                        *(leader.propose(f"b{batch}-{i}".encode(), timeout=10) for i in range(50))
                    )
                await eventually(
                    lambda: all(r.metrics.snapshots_taken >= 2 for r in replicas.values()),
                    timeout=10.0,
                )
            assert leader.is_leader
            assert {r.id: r.metrics.leader_changes for r in replicas.values()} == changes
            for replica in replicas.values():
                figures = replica.snapshotter
                assert figures.children_started >= 2
                assert figures.children_failed == 0
                assert figures.last_serialise_seconds is not None
                # The work the loop was spared: far more than the stall allowed.
                assert figures.last_serialise_seconds > MAX_LOOP_STALL
                allowed = max(MAX_LOOP_STALL, figures.last_serialise_seconds / 2)
                assert monitor.worst < allowed, (
                    f"the loop stalled {monitor.worst:.3f}s (serialising took "
                    f"{figures.last_serialise_seconds:.3f}s in the child)"
                )

            follower = next(r for r in replicas.values() if not r.is_leader)
            await follower.stop()
            machines[follower.id] = TableMachine()
            replicas[follower.id] = restarted = Replica(
                follower.id,
                {f"n{i}": ("127.0.0.1", base_port + i) for i in (1, 2, 3)},
                tmp_path / follower.id,
                machines[follower.id],
                snapshot_every=100,
            )
            await restarted.start()
            machine = machines[follower.id]
            assert machine.restored_from is not None
            assert machine.restored_from >= 200
            assert len(machine.base) == BASE_ITEMS
            assert machine.base[-1] == list(table[-1])
            await eventually(lambda: len(machine.commands) == 350, timeout=10.0)
            assert machine.commands == machines[leader.id].commands

    run(scenario)


async def _snapshot_child_after(replica: Replica, entries: int) -> int:
    """Make the lone replica leader, propose ``entries`` (its snapshot interval) and return the
    pid of the snapshot child that starts."""
    await single_leader([replica])
    for i in range(entries):
        await replica.propose(f"c{i}".encode(), timeout=5)
    await eventually(lambda: replica.snapshotter.child_pid is not None, timeout=10.0)
    pid = replica.snapshotter.child_pid
    assert pid is not None
    return pid


def test_a_killed_snapshot_child_leaves_the_replica_serving_and_a_later_snapshot_succeeds(
    tmp_path: Path,
    table: tuple[tuple[str, int, str], ...],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(snapshotter_module, "RETRY_SECONDS", 0.3)
    caplog.set_level(logging.WARNING, logger="reference_impl.server.snapshotter")

    async def scenario() -> None:
        machines = {"n1": TableMachine(table)}
        replicas = _replicas(tmp_path, free_port_block(2), 1, machines, snapshot_every=20)
        replica = replicas["n1"]
        async with running(replicas.values()):
            pid = await _snapshot_child_after(replica, 20)
            os.kill(pid, signal.SIGKILL)
            await eventually(lambda: replica.snapshotter.children_failed == 1, timeout=10.0)
            assert "killed by SIGKILL" in caplog.text
            assert replica.metrics.snapshots_taken == 0
            assert replica.is_leader
            assert await replica.propose(b"still serving", timeout=5) == 21
            # The next Ready after the retry delay starts a new child, which succeeds.
            count = 21
            deadline = time.monotonic() + 15
            while replica.metrics.snapshots_taken == 0 and time.monotonic() < deadline:
                count += 1
                assert await replica.propose(f"more{count}".encode(), timeout=5) == count
                await asyncio.sleep(0.05)
            assert replica.metrics.snapshots_taken == 1
            assert replica.snapshotter.children_failed == 1

    run(scenario)


def test_stop_while_a_snapshot_child_runs_kills_and_reaps_it(
    tmp_path: Path, table: tuple[tuple[str, int, str], ...]
) -> None:
    async def scenario() -> None:
        machines = {"n1": TableMachine(table)}
        replicas = _replicas(tmp_path, free_port_block(2), 1, machines, snapshot_every=10)
        replica = replicas["n1"]
        async with running(replicas.values()):
            pid = await _snapshot_child_after(replica, 10)
            await replica.stop()
            assert replica.snapshotter.child_pid is None
            with pytest.raises(ChildProcessError):  # reaped: no zombie left either
                os.waitpid(pid, os.WNOHANG)
            assert not Path(f"/proc/{pid}").exists()
            assert replica.metrics.snapshots_taken == 0

    run(scenario)


def test_a_cheap_state_goes_back_to_the_loop_after_one_child_and_a_failing_child_is_retried_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshotter_module, "RETRY_SECONDS", 0.2)
    state = {"fail": False, "value": 1}

    def serialise() -> bytes:
        if state["fail"]:
            raise RuntimeError("the state machine cannot serialise")
        return json.dumps(state).encode()

    async def scenario() -> None:
        ready = asyncio.Event()
        snapshots = Snapshotter("test", serialise, ready.set)
        # Nothing measured yet: the first snapshot forks, whatever the state's size.
        assert snapshots.start(5) is None
        assert snapshots.child_pid is not None
        state["value"] = 2  # the parent moves on; the child has the state of the fork instant
        await asyncio.wait_for(ready.wait(), 10)
        taken = snapshots.take_result()
        assert taken is not None
        assert taken.in_child
        assert taken.index == 5
        assert json.loads(taken.data) == {"fail": False, "value": 1}
        assert taken.serialise_seconds < snapshotter_module.IN_PROCESS_MAX_SECONDS
        # That was cheap: the next one is taken in process, at once.
        in_process = snapshots.start(6)
        assert in_process is not None
        assert not in_process.in_child
        assert json.loads(in_process.data)["value"] == 2

        snapshots.last_serialise_seconds = None  # unknown again: fork
        state["fail"] = True
        ready.clear()
        assert snapshots.start(7) is None
        await asyncio.wait_for(ready.wait(), 10)
        assert snapshots.take_result() is None
        assert snapshots.children_failed == 1
        assert not snapshots.may_start()  # not straight into another fork
        await eventually(snapshots.may_start, timeout=2)
        state["fail"] = False
        ready.clear()
        assert snapshots.start(8) is None
        await asyncio.wait_for(ready.wait(), 10)
        retried = snapshots.take_result()
        assert retried is not None
        assert retried.index == 8
        assert retried.in_child

    run(scenario)


def test_a_child_that_serialises_past_its_deadline_is_killed_and_counts_as_failed(
    table: tuple[tuple[str, int, str], ...],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(snapshotter_module, "CHILD_TIMEOUT_SECONDS", 0.05)
    caplog.set_level(logging.WARNING, logger="reference_impl.server.snapshotter")

    async def scenario() -> None:
        ready = asyncio.Event()
        snapshots = Snapshotter("test", TableMachine(table).snapshot, ready.set)
        assert snapshots.start(1) is None
        pid = snapshots.child_pid
        await asyncio.wait_for(ready.wait(), 10)
        assert snapshots.take_result() is None
        assert snapshots.children_failed == 1
        assert f"snapshot child {pid} still running after 0s; killing it" in caplog.text
        assert "killed by SIGKILL" in caplog.text
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists()

    run(scenario)
