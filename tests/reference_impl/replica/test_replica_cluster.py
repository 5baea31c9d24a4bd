"""Real Replica instances on loopback (ports 18000-18999): they elect a leader, replicate,
serve linearizable reads on followers, survive the leader's stop, hand over leadership,
snapshot automatically, and shrug off garbage on the peer port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reference_impl.raft.errors import NotLeader, ProposalDropped, ProposalTimeout, RaftError
from reference_impl.server.peer_transport import PEER_MAGIC, encode_frame
from reference_impl.server.replica import Replica
from tests.reference_impl.replica.replica_testing import eventually, run, single_leader
from tests.reference_impl.replica.replica_testing import running as running_replicas
from tests.support.ports import free_port_block


class CounterMachine:
    """A deterministic state machine: a list of applied commands; apply returns its length."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.restored_from: int | None = None

    def apply(self, index: int, data: bytes) -> Any:
        self.commands.append(data.decode())
        return len(self.commands)

    def snapshot(self) -> bytes:
        return json.dumps(self.commands).encode()

    def restore(self, data: bytes, index: int) -> None:
        self.commands = json.loads(data)
        self.restored_from = index


class Group:
    def __init__(self, root: Path, size: int, **options: Any) -> None:
        self.root = root
        base_port = free_port_block(size + 1)
        self.peers = {f"n{i}": ("127.0.0.1", base_port + i) for i in range(1, size + 1)}
        self.options = options
        self.machines = {node_id: CounterMachine() for node_id in self.peers}
        self.replicas = {node_id: self._make(node_id) for node_id in self.peers}

    def _make(self, node_id: str) -> Replica:
        return Replica(
            node_id, self.peers, self.root / node_id, self.machines[node_id], **self.options
        )

    def recreate(self, node_id: str) -> Replica:
        self.machines[node_id] = CounterMachine()
        self.replicas[node_id] = self._make(node_id)
        return self.replicas[node_id]

    async def leader(self, timeout: float = 5.0, exclude: str | None = None) -> Replica:
        return await single_leader(self.replicas.values(), timeout, exclude)


@contextlib.asynccontextmanager
async def running(group: Group) -> AsyncIterator[Group]:
    async with running_replicas(group.replicas.values()):
        yield group


@pytest.mark.parametrize("async_leader_writes", [True, False], ids=["async", "inline"])
def test_three_replicas_elect_replicate_and_survive_the_leaders_stop(
    tmp_path: Path, async_leader_writes: bool
) -> None:
    async def scenario() -> None:
        group = Group(tmp_path, 3, async_leader_writes=async_leader_writes)
        async with running(group):
            leader = await group.leader()
            results = await asyncio.gather(
                *(leader.propose(f"c{i}".encode(), timeout=5) for i in range(200))
            )
            assert sorted(results) == list(range(1, 201))
            await eventually(lambda: all(len(m.commands) == 200 for m in group.machines.values()))
            assert len({tuple(m.commands) for m in group.machines.values()}) == 1
            follower = next(r for r in group.replicas.values() if not r.is_leader)
            with pytest.raises(NotLeader):
                await follower.propose(b"nope", timeout=1)
            await follower.linearizable_read(timeout=2)
            assert follower.applied_index >= leader.commit_index - 1
            old_id = leader.id
            stopped_at = time.monotonic()
            await leader.stop()
            new_leader = await group.leader(timeout=5, exclude=old_id)
            failover = time.monotonic() - stopped_at
            assert failover < 3.0, f"failover took {failover:.2f}s"
            assert await new_leader.propose(b"after", timeout=5) == 201
            restarted = group.recreate(old_id)
            await restarted.start()
            await eventually(lambda: group.machines[old_id].commands[-1:] == ["after"])
            assert group.machines[old_id].commands == group.machines[new_leader.id].commands

    run(scenario)


def test_five_replicas_transfer_leadership_and_read_on_every_follower(tmp_path: Path) -> None:
    async def scenario() -> None:
        changes: list[tuple[str | None, int]] = []
        async with running(
            Group(tmp_path, 5, on_leader_change=lambda who, term: changes.append((who, term)))
        ) as group:
            leader = await group.leader()
            await leader.propose(b"x", timeout=5)
            target = next(r for r in group.replicas.values() if r is not leader)
            await leader.transfer_leadership(target.id)
            assert (await group.leader()).id == target.id
            assert await target.propose(b"y", timeout=5) == 2
            for replica in group.replicas.values():
                await replica.linearizable_read(timeout=3)
                assert group.machines[replica.id].commands[:2] == ["x", "y"]
            assert any(leader_id == target.id for leader_id, _ in changes)
            assert target.metrics.elections_started >= 1

    run(scenario)


@pytest.mark.process  # an automatic snapshot may fork its serialising child
def test_replicas_snapshot_automatically_and_restart_from_the_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        group = Group(tmp_path, 3, snapshot_every=50)
        async with running(group):
            leader = await group.leader()
            for batch in range(4):
                await asyncio.gather(
                    *(leader.propose(f"b{batch}-{i}".encode(), timeout=5) for i in range(40))
                )
            await eventually(lambda: all(len(m.commands) == 160 for m in group.machines.values()))
            assert all(r.metrics.snapshots_taken >= 1 for r in group.replicas.values())
            follower = next(r for r in group.replicas.values() if not r.is_leader)
            await follower.stop()
            restarted = group.recreate(follower.id)
            await restarted.start()
            machine = group.machines[follower.id]
            assert machine.restored_from is not None
            assert machine.restored_from >= 50
            await eventually(lambda: len(machine.commands) == 160)
            assert machine.commands == group.machines[leader.id].commands

    run(scenario)


def test_garbage_on_the_peer_port_drops_the_connection_not_the_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(Group(tmp_path, 3)) as group:
            leader = await group.leader()
            host, port = group.peers[leader.id]
            for garbage in (
                b"GET / HTTP/1.1\r\n\r\n",
                PEER_MAGIC + b"\x00\x00\x00\x04\x00\x00\x00\x00abcd",  # bad CRC
                PEER_MAGIC + encode_frame(b"\x01\x63nonsense"),  # bad message
                PEER_MAGIC + b"\xff\xff\xff\xff\x00\x00\x00\x00",  # absurd length
            ):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(garbage)
                await writer.drain()
                assert await asyncio.wait_for(reader.read(), 5) == b"", "connection closed"
                writer.close()
            assert leader.metrics.malformed_frames == 4
            assert leader.is_leader
            assert await leader.propose(b"still fine", timeout=5) >= 1

    run(scenario)


def test_the_unsafe_switches_are_off_by_default_and_loud_when_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counted_fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted_fdatasync)

    async def scenario() -> None:
        async with running(Group(tmp_path / "safe", 1)) as group:
            leader = await group.leader()
            assert await leader.propose(b"a", timeout=5) == 1
        assert synced, "by default every batch is fsynced"
        synced.clear()
        with caplog.at_level(logging.WARNING):
            unsafe = Group(
                tmp_path / "unsafe",
                1,
                unsafe_no_fsync=True,
                unsafe_no_check_quorum=True,
            )
            async with running(unsafe):
                leader = await unsafe.leader()
                assert await leader.propose(b"a", timeout=5) == 1
        assert synced == [], "unsafe_no_fsync must not fsync"
        assert caplog.text.count("UNSAFE") >= 2

    run(scenario)


def test_a_follower_without_a_known_leader_refuses_reads_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        group = Group(tmp_path, 3)
        lonely = group.replicas["n1"]
        await lonely.start()  # its peers never start: no leader can be elected
        try:
            started = time.monotonic()
            with pytest.raises(NotLeader):
                await lonely.linearizable_read(timeout=5)
            assert time.monotonic() - started < 1.0
            with pytest.raises(NotLeader):
                await lonely.propose(b"x", timeout=5)
        finally:
            await lonely.stop()

    run(scenario)


def test_a_leader_left_in_a_minority_steps_down_and_refuses_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(Group(tmp_path, 3)) as group:
            leader = await group.leader()
            await leader.propose(b"before", timeout=5)
            for replica in group.replicas.values():
                if replica is not leader:
                    await replica.stop()
            await eventually(lambda: not leader.is_leader, timeout=3)
            with pytest.raises(NotLeader):
                await leader.propose(b"alone", timeout=1)
            with pytest.raises(NotLeader):
                await leader.linearizable_read(timeout=1)

    run(scenario)


def test_a_leader_whose_disk_fails_stops_serving_and_the_others_elect_a_new_one(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running(Group(tmp_path, 3)) as group:
            leader = await group.leader()
            await leader.propose(b"before", timeout=5)
            fd = leader._storage._fd
            assert fd is not None
            os.close(fd)  # the next write of the background writer fails with EBADF
            with pytest.raises(RaftError):
                await leader.propose(b"lost?", timeout=2)
            await eventually(lambda: not leader.running)
            successor = await group.leader(exclude=leader.id)
            assert successor.id != leader.id
            assert await successor.propose(b"after", timeout=5) >= 2
            leader._storage._fd = None  # already closed above

    run(scenario)


def test_a_proposal_without_a_quorum_times_out_at_its_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        group = Group(tmp_path, 3)
        async with running(group):
            leader = await group.leader()
            await leader.propose(b"first", timeout=5)
            for replica in group.replicas.values():
                if replica is not leader:
                    await replica.stop()
            started = time.monotonic()
            with pytest.raises(RaftError) as caught:
                await leader.propose(b"no quorum", timeout=0.3)
            waited = time.monotonic() - started
            assert isinstance(caught.value, ProposalTimeout | ProposalDropped), caught.value
            assert 0.25 <= waited < 0.3 + 0.5, f"gave up after {waited:.2f}s"
            assert leader.metrics.proposals_failed >= 1

    run(scenario)
