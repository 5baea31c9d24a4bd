"""Deterministic simulation of a Raft group: N RaftNodes in one process on a virtual clock.

Everything random (network delay, loss, duplication, reordering, partitions, crashes, client
requests, election timeouts) comes from one seeded ``random.Random``, so a seed replays exactly.
Each node is driven the way the asyncio shell drives it: inputs that arrive while its Ready is
being fsynced wait and go into the next Ready, and a leader sends its messages before its own
write unless its term or vote changes (the shell's default, lockd's ``leader_writes: inline``).
With ``async_leader_writes`` (half the seeds; ``leader_writes: background``) a leader does not
wait for its write at all: it goes on with the next inputs, its writes
finish in order later and are reported with ``RaftNode.persisted``, and a node that stops leading
waits for them before any write of its own. A crash loses the inputs, the unsent messages and
a random part of the un-fsynced writes.

Invariants are checked as the run goes (``SimulationFailure`` carries the seed):
election safety, log matching, leader completeness, state machine safety, linearizable
ReadIndex answers; at the end the group must heal and converge with every acknowledged write.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.core import RaftNode
from reference_impl.raft.errors import NotLeader, ProposalDropped
from reference_impl.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    Ready,
    RestoredState,
    Role,
    Snapshot,
)

REPLAY_COMMAND = (
    "LOCKBENCH_SEED={seed} pytest tests/reference_impl/raft/test_raft_simulation.py -k replay"
)


class SimulationFailure(AssertionError):
    """An invariant broke; the message names the seed, the replay command and recent events."""


# ---------------------------------------------------------------------------------------------
# Storage model


@dataclass
class MemoryStorage:
    """What survives a crash: the fsynced state, plus a random prefix of the unsynced batch
    (a torn WAL tail is truncated at a record boundary, so a crash keeps a prefix of records)."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    pending: list[tuple[str, Any]] = field(default_factory=list)

    def write(self, ready: Ready) -> None:
        if ready.snapshot is not None:
            self.pending.append(("snapshot", ready.snapshot))
        self.pending.extend(("entry", entry) for entry in ready.entries)
        if ready.hard_state is not None:
            self.pending.append(("hard_state", ready.hard_state))

    def fsync(self) -> None:
        for record in self.pending:
            self._apply(record)
        self.pending = []

    def crash(self, rng: random.Random) -> None:
        keep = rng.randint(0, len(self.pending))
        for record in self.pending[:keep]:
            self._apply(record)
        self.pending = []

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """The caller's own compaction: an atomic file replace, durable at once."""
        self._apply(("snapshot", snapshot))

    def restore(self) -> RestoredState:
        return RestoredState(self.hard_state, self.snapshot, tuple(self.entries))

    def _apply(self, record: tuple[str, Any]) -> None:
        kind, value = record
        base = self.snapshot.meta.index if self.snapshot else 0
        if kind == "hard_state":
            self.hard_state = value
        elif kind == "entry":
            entry: Entry = value
            if entry.index <= base:
                return
            del self.entries[entry.index - base - 1 :]
            assert entry.index == base + len(self.entries) + 1, "storage model gap"
            self.entries.append(entry)
        else:
            snapshot: Snapshot = value
            index = snapshot.meta.index
            if index <= base:
                return
            keeps = (
                index - base <= len(self.entries)
                and self.entries[index - base - 1].term == snapshot.meta.term
            )
            self.entries = self.entries[index - base :] if keeps else []
            self.snapshot = snapshot


# ---------------------------------------------------------------------------------------------
# State machine model


class RecordingStateMachine:
    """Keeps every applied command so snapshots and restores can be compared across nodes."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    @property
    def applied(self) -> int:
        return len(self.commands)

    def apply(self, entry: Entry) -> None:
        assert entry.index == len(self.commands) + 1, (
            f"applied {entry.index} after {len(self.commands)}"
        )
        self.commands.append(entry.data.decode("latin-1"))

    def snapshot(self) -> bytes:
        return json.dumps(self.commands).encode()

    def restore(self, data: bytes, index: int) -> None:
        self.commands = json.loads(data)
        assert len(self.commands) == index


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    """One run's shape; ``from_seed`` draws a varied one so seeds cover many configurations."""

    nodes: int = 5
    duration_ms: int = 2_000
    tick_ms: int = 50
    min_delay_ms: int = 1
    max_delay_ms: int = 20
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    fsync_ms: tuple[int, int] = (1, 4)
    nemesis_every_ms: tuple[int, int] = (200, 700)
    partitions: bool = True
    crashes: bool = True
    transfers: bool = True
    proposal_every_ms: tuple[int, int] = (5, 30)
    read_every_ms: tuple[int, int] = (20, 80)
    compact_every: int = 16
    pre_vote: bool = True
    check_quorum: bool = True
    lease_reads: bool = False
    max_inflight: int = 4
    max_entries_per_append: int = 8
    settle_ms: int = 4_000
    async_leader_writes: bool = True
    broadcast_commit: bool = False

    @staticmethod
    def from_seed(seed: int) -> SimOptions:
        rng = random.Random(seed ^ 0x5EED)
        check_quorum = rng.random() < 0.8
        return SimOptions(
            nodes=rng.choice((3, 3, 5, 5, 5)),
            duration_ms=rng.choice((1_000, 1_500, 2_000)),
            drop_rate=rng.choice((0.0, 0.01, 0.05, 0.15)),
            duplicate_rate=rng.choice((0.0, 0.02, 0.1)),
            max_delay_ms=rng.choice((5, 20, 60)),
            partitions=rng.random() < 0.8,
            crashes=rng.random() < 0.7,
            transfers=rng.random() < 0.3,
            compact_every=rng.choice((4, 16, 64, 10_000)),
            pre_vote=rng.random() < 0.8,
            check_quorum=check_quorum,
            lease_reads=check_quorum and rng.random() < 0.3,
            max_inflight=rng.choice((1, 4, 16)),
            max_entries_per_append=rng.choice((1, 8, 256)),
            async_leader_writes=rng.random() < 0.5,
            broadcast_commit=rng.random() < 0.3,
        )


@dataclass
class SimNode:
    id: NodeId
    config: RaftConfig
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    node: RaftNode | None = None
    machine: RecordingStateMachine = field(default_factory=RecordingStateMachine)
    busy: Ready | None = None
    sent_first: bool = False
    writes_in_flight: int = 0  # asynchronous leader writes not finished yet
    last_write_done: int = 0  # they finish in order: one writer
    inbox: deque[Any] = field(default_factory=deque)
    incarnation: int = 0
    checked_commit: int = 0

    @property
    def alive(self) -> bool:
        return self.node is not None


class Simulation:
    """Runs one seed. ``run()`` raises SimulationFailure on any broken invariant."""

    def __init__(self, seed: int, options: SimOptions | None = None) -> None:
        self.seed = seed
        self.options = options or SimOptions.from_seed(seed)
        self.rng = random.Random(seed)
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = 0
        ids = tuple(f"n{i}" for i in range(1, self.options.nodes + 1))
        self.ids = ids
        self.nodes: dict[NodeId, SimNode] = {}
        for node_id in ids:
            config = RaftConfig(
                node_id,
                ids,
                pre_vote=self.options.pre_vote,
                check_quorum=self.options.check_quorum,
                lease_reads=self.options.lease_reads,
                max_inflight=self.options.max_inflight,
                broadcast_commit=self.options.broadcast_commit,
                max_entries_per_append=self.options.max_entries_per_append,
            )
            self.nodes[node_id] = SimNode(node_id, config)
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.trace: deque[str] = deque(maxlen=60)
        # Global knowledge for the invariants.
        self.leaders: dict[int, NodeId] = {}
        self.leaders_checked: set[tuple[NodeId, int]] = set()
        self.entry_facts: dict[tuple[int, int], tuple[bytes, int, int | None]] = {}
        self.committed: dict[int, tuple[int, int]] = {}
        self.applied: dict[int, str] = {}
        self.acked: dict[str, int] = {}
        self.max_acked = 0
        self.pending_proposals: dict[tuple[NodeId, int], tuple[int, str, int]] = {}
        self.commit_latencies_ms: list[int] = []
        self.pending_reads: dict[bytes, int] = {}
        self.reads_answered = 0
        self.proposal_counter = 0
        self.read_counter = 0
        self.settling = False

    # -----------------------------------------------------------------------------------------
    # Event queue

    def schedule(self, delay: int, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (self.now + delay, self._sequence, action))

    def fail(self, message: str) -> None:
        recent = "\n  ".join(self.trace)
        raise SimulationFailure(
            f"seed {self.seed}: {message}\n"
            f"options: {self.options}\n"
            f"replay: {REPLAY_COMMAND.format(seed=self.seed)}\n"
            f"last events:\n  {recent}"
        )

    def note(self, text: str) -> None:
        self.trace.append(f"t={self.now} {text}")

    # -----------------------------------------------------------------------------------------
    # Run

    def run(self) -> Simulation:
        try:
            self._run()
        except SimulationFailure:
            raise
        except Exception as error:  # a crash in the core or the model: still name the seed
            self.fail(f"unexpected {type(error).__name__}: {error}")
        return self

    def _run(self) -> None:
        for sim_node in self.nodes.values():
            self._start(sim_node)
            self.schedule(self.rng.randrange(self.options.tick_ms), self._ticker(sim_node.id))
        self.schedule(self.rng.randint(*self.options.proposal_every_ms), self._client_propose)
        self.schedule(self.rng.randint(*self.options.read_every_ms), self._client_read)
        self.schedule(self.rng.randint(*self.options.nemesis_every_ms), self._nemesis)
        self._run_until(self.options.duration_ms)
        self._settle()

    def _run_until(self, deadline: int) -> None:
        while self._queue and self._queue[0][0] <= deadline:
            when, _, action = heapq.heappop(self._queue)
            self.now = when
            action()
        self.now = deadline

    def _settle(self) -> None:
        """Heal everything, restart everyone, stop faults, and require convergence."""
        self.settling = True
        self.blocked.clear()
        for sim_node in self.nodes.values():
            if not sim_node.alive:
                self._restart(sim_node)
        # Slow configurations (one entry per append, one in flight, long delays) need a while to
        # drain; give up only when nothing progresses for settle_ms (or after a hard cap).
        hard_deadline = self.now + 60_000
        last_progress = self.now
        shape: tuple[tuple[int, int], ...] = ()
        while not self._converged():
            self._run_until(self.now + 250)
            new_shape = tuple(
                (n.node.commit_index, n.node.last_index) if n.node else (-1, -1)
                for n in self.nodes.values()
            )
            if new_shape != shape:
                shape, last_progress = new_shape, self.now
            if self.now - last_progress > self.options.settle_ms or self.now > hard_deadline:
                states = {
                    n.id: (n.node.role.value, n.node.term, n.node.commit_index, n.machine.applied)
                    for n in self.nodes.values()
                    if n.node is not None
                }
                self.fail(f"no convergence after healing: {states}")
        for data, index in self.acked.items():
            for sim_node in self.nodes.values():
                commands = sim_node.machine.commands
                if len(commands) < index or commands[index - 1] != data:
                    self.fail(f"acknowledged {data!r} at {index} missing on {sim_node.id}")

    def _converged(self) -> bool:
        leaders = [n for n in self.nodes.values() if n.node and n.node.role is Role.LEADER]
        if len(leaders) != 1:
            return False
        leader = leaders[0].node
        assert leader is not None
        if leader.log.term_at(leader.commit_index) != leader.term:
            return False
        return all(
            n.node is not None
            and n.machine.applied == leader.last_index
            and n.node.commit_index == leader.last_index
            for n in self.nodes.values()
        )

    # -----------------------------------------------------------------------------------------
    # Nodes

    def _start(self, sim_node: SimNode) -> None:
        sim_node.incarnation += 1
        restored = sim_node.storage.restore()
        sim_node.machine = RecordingStateMachine()
        if restored.snapshot is not None:
            sim_node.machine.restore(restored.snapshot.data, restored.snapshot.meta.index)
        sim_node.node = RaftNode(sim_node.config, restored, random.Random(self.rng.getrandbits(32)))
        sim_node.busy = None
        sim_node.inbox.clear()
        sim_node.checked_commit = 0
        sim_node.writes_in_flight = 0

    def _crash(self, sim_node: SimNode) -> None:
        self.note(f"crash {sim_node.id}")
        sim_node.storage.crash(self.rng)
        sim_node.node = None
        sim_node.busy = None
        sim_node.writes_in_flight = 0
        sim_node.inbox.clear()
        sim_node.incarnation += 1
        for key in [k for k in self.pending_proposals if k[0] == sim_node.id]:
            del self.pending_proposals[key]

    def _restart(self, sim_node: SimNode) -> None:
        self.note(f"restart {sim_node.id}")
        self._start(sim_node)

    def _ticker(self, node_id: NodeId) -> Callable[[], None]:
        def tick() -> None:
            sim_node = self.nodes[node_id]
            if sim_node.alive:
                self._input(sim_node, "tick")
            self.schedule(self.options.tick_ms, tick)

        return tick

    def _input(self, sim_node: SimNode, item: Any) -> None:
        if sim_node.busy is not None:
            sim_node.inbox.append(item)
            return
        self._feed(sim_node, item)
        self._pump(sim_node)

    def _feed(self, sim_node: SimNode, item: Any) -> None:
        node = sim_node.node
        assert node is not None
        if item == "tick":
            node.tick()
        elif isinstance(item, tuple) and item[0] == "propose":
            self._propose_on(sim_node, item[1])
        elif isinstance(item, tuple) and item[0] == "read":
            try:
                node.read_index(item[1])
            except NotLeader:
                self.pending_reads.pop(item[1], None)
        elif isinstance(item, tuple) and item[0] == "transfer":
            with contextlib.suppress(NotLeader):
                node.transfer_leadership(item[1])
        else:
            node.step(item)

    def _propose_on(self, sim_node: SimNode, data: str) -> None:
        node = sim_node.node
        assert node is not None
        try:
            index = node.propose(data.encode("latin-1"))
        except (NotLeader, ProposalDropped):
            return
        self.pending_proposals[(sim_node.id, index)] = (node.term, data, self.now)

    def _pump(self, sim_node: SimNode) -> None:
        node = sim_node.node
        while node is not None and sim_node.busy is None and node.has_ready():
            if sim_node.writes_in_flight and node.role is not Role.LEADER:
                return  # as the shell: a former leader's writes finish before its next write
            ready = node.ready()
            self._check_ready(sim_node, node, ready)
            if ready.hard_state is None and not ready.entries and ready.snapshot is None:
                self._finish_ready(sim_node, node, ready)
                continue
            # As the shell does: a leader sends before its own write unless term or vote change
            # (Raft thesis 10.2.1); a crash during the fsync then loses a write already sent.
            durable = sim_node.storage.hard_state
            sent_first = (
                ready.role is Role.LEADER
                and ready.snapshot is None
                and (
                    ready.hard_state is None
                    or (ready.hard_state.term, ready.hard_state.vote)
                    == (durable.term, durable.vote)
                )
            )
            if sent_first and self.options.async_leader_writes:
                self._write_in_background(sim_node, node, ready)
                continue
            if sim_node.writes_in_flight:
                self.fail(f"{sim_node.id}: a synchronous write while leader writes are in flight")
            if sent_first:
                for msg in ready.messages:
                    self._send(msg)
            sim_node.storage.write(ready)
            sim_node.busy = ready
            sim_node.sent_first = sent_first
            incarnation = sim_node.incarnation
            delay = self.rng.randint(*self.options.fsync_ms)

            def fsynced(sim_node: SimNode = sim_node, incarnation: int = incarnation) -> None:
                if sim_node.incarnation != incarnation or sim_node.node is None:
                    return
                ready = sim_node.busy
                assert ready is not None
                sim_node.storage.fsync()
                sim_node.busy = None
                self._finish_ready(sim_node, sim_node.node, ready, sent=sim_node.sent_first)
                while sim_node.inbox:
                    self._feed(sim_node, sim_node.inbox.popleft())
                self._pump(sim_node)

            self.schedule(delay, fsynced)

    def _write_in_background(self, sim_node: SimNode, node: RaftNode, ready: Ready) -> None:
        """A leader's write: send, hand the write to the (one, in-order) writer, go on."""
        for msg in ready.messages:
            self._send(msg)
        sim_node.storage.write(ready)
        sim_node.writes_in_flight += 1
        incarnation = sim_node.incarnation
        done_at = max(self.now + self.rng.randint(*self.options.fsync_ms), sim_node.last_write_done)
        sim_node.last_write_done = done_at
        last = ready.entries[-1] if ready.entries else None

        def written(sim_node: SimNode = sim_node, incarnation: int = incarnation) -> None:
            if sim_node.incarnation != incarnation or sim_node.node is None:
                return
            sim_node.storage.fsync()
            sim_node.writes_in_flight -= 1
            if last is not None:
                sim_node.node.persisted(last.index, last.term)
            self._pump(sim_node)

        self.schedule(done_at - self.now, written)
        self._finish_ready(sim_node, node, ready, sent=True, entries_persisted=False)

    def _finish_ready(
        self,
        sim_node: SimNode,
        node: RaftNode,
        ready: Ready,
        *,
        sent: bool = False,
        entries_persisted: bool = True,
    ) -> None:
        if not sent:
            for msg in ready.messages:
                self._send(msg)
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            sim_node.machine.restore(ready.snapshot.data, meta.index)
            self._check_snapshot(sim_node, ready.snapshot)
        for entry in ready.committed:
            self._apply(sim_node, node, entry)
        for read_state in ready.read_states:
            required = self.pending_reads.pop(read_state.ctx, None)
            if required is not None:
                self.reads_answered += 1
                if read_state.index < required:
                    self.fail(
                        f"{sim_node.id}: ReadIndex answered {read_state.index} for a read that "
                        f"started after index {required} was acknowledged (stale read)"
                    )
        node.advance(ready, entries_persisted=entries_persisted)
        if (
            node.applied_index - node.log.snapshot_index >= self.options.compact_every
            and not sim_node.writes_in_flight
        ):
            snapshot = node.compact(node.applied_index, sim_node.machine.snapshot())
            sim_node.storage.save_snapshot(snapshot)

    # -----------------------------------------------------------------------------------------
    # Invariants

    def _check_ready(self, sim_node: SimNode, node: RaftNode, ready: Ready) -> None:
        if ready.role is Role.LEADER:
            holder = self.leaders.setdefault(ready.term, sim_node.id)
            if holder != sim_node.id:
                self.fail(
                    f"election safety: {holder} and {sim_node.id} both lead term {ready.term}"
                )
            if (sim_node.id, ready.term) not in self.leaders_checked:
                self.leaders_checked.add((sim_node.id, ready.term))
                self.note(f"{sim_node.id} leads term {ready.term}")
                self._check_leader_completeness(sim_node.id, node, ready.term)
        for entry in ready.entries:
            prev_term = node.log.term_at(entry.index - 1)
            fact = (entry.data, int(entry.kind), prev_term)
            known = self.entry_facts.setdefault((entry.index, entry.term), fact)
            if known[:2] != fact[:2] or (
                known[2] is not None and prev_term is not None and known[2] != prev_term
            ):
                self.fail(
                    f"log matching: {sim_node.id} holds a different entry at index "
                    f"{entry.index} term {entry.term}: {fact} vs {known}"
                )
        start = max(sim_node.checked_commit, node.log.snapshot_index) + 1
        for index in range(start, node.commit_index + 1):
            term = node.log.term_at(index)
            if term is None:
                self.fail(f"{sim_node.id} committed {index} but has no term for it")
            assert term is not None
            known_term, _ = self.committed.setdefault(index, (term, node.term))
            if known_term != term:
                self.fail(
                    f"{sim_node.id} commits index {index} with term {term}, but term "
                    f"{known_term} was committed there"
                )
        sim_node.checked_commit = max(sim_node.checked_commit, node.commit_index)

    def _check_leader_completeness(self, node_id: NodeId, node: RaftNode, term: int) -> None:
        for index, (entry_term, commit_term) in self.committed.items():
            if commit_term >= term or index <= node.log.snapshot_index:
                continue
            if node.log.term_at(index) != entry_term:
                self.fail(
                    f"leader completeness: {node_id} leads term {term} without entry {index} "
                    f"(term {entry_term}), committed in term {commit_term}"
                )

    def _check_snapshot(self, sim_node: SimNode, snapshot: Snapshot) -> None:
        for index, command in enumerate(sim_node.machine.commands, start=1):
            known = self.applied.get(index)
            if known is not None and known != command:
                self.fail(f"{sim_node.id} installed a snapshot disagreeing at index {index}")

    def _apply(self, sim_node: SimNode, node: RaftNode, entry: Entry) -> None:
        if entry.index != sim_node.machine.applied + 1:
            self.fail(f"{sim_node.id} applied {entry.index} right after {sim_node.machine.applied}")
        sim_node.machine.apply(entry)
        command = sim_node.machine.commands[-1]
        known = self.applied.setdefault(entry.index, command)
        if known != command:
            self.fail(
                f"state machine safety: {sim_node.id} applied {command!r} at {entry.index}, "
                f"another node applied {known!r}"
            )
        pending = self.pending_proposals.pop((sim_node.id, entry.index), None)
        if pending is not None:
            term, data, proposed_at = pending
            if term == entry.term and entry.kind is EntryKind.NORMAL:
                if command != data:
                    self.fail(f"{sim_node.id}: proposal {data!r} applied as {command!r}")
                self.acked[data] = entry.index
                self.commit_latencies_ms.append(self.now - proposed_at)
                self.max_acked = max(self.max_acked, entry.index)

    # -----------------------------------------------------------------------------------------
    # Network, clients, faults

    def _send(self, msg: Message) -> None:
        if self.settling:
            copies = 1
        else:
            if self.rng.random() < self.options.drop_rate:
                return
            copies = 2 if self.rng.random() < self.options.duplicate_rate else 1
        for _ in range(copies):
            delay = self.rng.randint(self.options.min_delay_ms, self.options.max_delay_ms)
            self.schedule(delay, functools.partial(self._deliver, msg))

    def _deliver(self, msg: Message) -> None:
        if (msg.src, msg.dst) in self.blocked:
            return
        sim_node = self.nodes[msg.dst]
        if sim_node.alive:
            self._input(sim_node, msg)

    def _client_propose(self) -> None:
        leaders = [n for n in self.nodes.values() if n.node and n.node.role is Role.LEADER]
        if leaders:
            self.proposal_counter += 1
            target = self.rng.choice(leaders)
            self._input(target, ("propose", f"p{self.proposal_counter}"))
        if not self.settling:
            self.schedule(self.rng.randint(*self.options.proposal_every_ms), self._client_propose)

    def _client_read(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if alive:
            self.read_counter += 1
            ctx = f"r{self.read_counter}".encode()
            self.pending_reads[ctx] = self.max_acked
            self._input(self.rng.choice(alive), ("read", ctx))
        if not self.settling:
            self.schedule(self.rng.randint(*self.options.read_every_ms), self._client_read)

    def _nemesis(self) -> None:
        if self.settling:
            return
        choices = ["heal", "heal"]
        if self.options.partitions:
            choices += ["partition", "isolate_leader"]
        if self.options.crashes:
            choices += ["crash", "restart", "restart"]
        if self.options.transfers:
            choices += ["transfer"]
        action = self.rng.choice(choices)
        alive = [n for n in self.nodes.values() if n.alive]
        dead = [n for n in self.nodes.values() if not n.alive]
        if action == "heal":
            self.blocked.clear()
            self.note("heal")
        elif action == "partition":
            shuffled = list(self.ids)
            self.rng.shuffle(shuffled)
            cut = self.rng.randint(1, len(shuffled) - 1)
            self._partition(shuffled[:cut], shuffled[cut:])
        elif action == "isolate_leader":
            leader_ids = [n.id for n in alive if n.node and n.node.role is Role.LEADER]
            if leader_ids:
                leader_id = self.rng.choice(leader_ids)
                self._partition([leader_id], [i for i in self.ids if i != leader_id])
        elif action == "crash" and alive:
            self._crash(self.rng.choice(alive))
        elif action == "restart" and dead:
            self._restart(self.rng.choice(dead))
        elif action == "transfer":
            leaders = [n for n in alive if n.node and n.node.role is Role.LEADER]
            if leaders:
                leader = self.rng.choice(leaders)
                target = self.rng.choice([i for i in self.ids if i != leader.id])
                self.note(f"transfer {leader.id} -> {target}")
                self._input(leader, ("transfer", target))
        self.schedule(self.rng.randint(*self.options.nemesis_every_ms), self._nemesis)

    def _partition(self, side_a: list[NodeId], side_b: list[NodeId]) -> None:
        self.note(f"partition {side_a} | {side_b}")
        self.blocked.clear()
        for a in side_a:
            for b in side_b:
                self.blocked.add((a, b))
                self.blocked.add((b, a))


# ---------------------------------------------------------------------------------------------
# A hand-driven cluster for the rule-by-rule tests


class ManualCluster:
    """Nodes whose Readys are handled at once (persist, send, apply); messages wait in
    ``outbox`` until a test delivers them, so a test controls exactly who hears what."""

    def __init__(self, size: int = 3, seed: int = 1, **config: Any) -> None:
        self.ids = tuple(f"n{i}" for i in range(1, size + 1))
        self.config = config
        self.rng = random.Random(seed)
        self.storages = {node_id: MemoryStorage() for node_id in self.ids}
        self.machines: dict[NodeId, RecordingStateMachine] = {}
        self.nodes: dict[NodeId, RaftNode] = {}
        self.outbox: list[Message] = []
        self.read_states: dict[NodeId, list[tuple[bytes, int]]] = {i: [] for i in self.ids}
        self.down: set[NodeId] = set()
        self.cut: set[tuple[NodeId, NodeId]] = set()
        for node_id in self.ids:
            self.start(node_id)

    def start(self, node_id: NodeId) -> RaftNode:
        restored = self.storages[node_id].restore()
        machine = RecordingStateMachine()
        if restored.snapshot is not None:
            machine.restore(restored.snapshot.data, restored.snapshot.meta.index)
        self.machines[node_id] = machine
        config = RaftConfig(node_id, self.ids, **self.config)
        node = RaftNode(config, restored, random.Random(self.rng.getrandbits(32)))
        self.nodes[node_id] = node
        self.down.discard(node_id)
        return node

    def crash(self, node_id: NodeId) -> None:
        self.storages[node_id].crash(self.rng)
        self.down.add(node_id)

    def process(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            storage = self.storages[node_id]
            storage.write(ready)
            storage.fsync()
            self.outbox.extend(ready.messages)
            machine = self.machines[node_id]
            if ready.snapshot is not None:
                machine.restore(ready.snapshot.data, ready.snapshot.meta.index)
            for entry in ready.committed:
                machine.apply(entry)
            self.read_states[node_id].extend((r.ctx, r.index) for r in ready.read_states)
            node.advance(ready)

    def process_all(self) -> None:
        for node_id in self.ids:
            if node_id not in self.down:
                self.process(node_id)

    def tick(self, node_id: NodeId, times: int = 1) -> None:
        for _ in range(times):
            self.nodes[node_id].tick()
        self.process(node_id)

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for node_id in self.ids:
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.process_all()
            self.deliver()

    def isolate(self, node_id: NodeId) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()

    def deliver(
        self, accept: Callable[[Message], bool] | None = None, *, rounds: int = 1000
    ) -> list[Message]:
        """Deliver queued messages (and what they cause) until quiet; returns what was dropped."""
        dropped: list[Message] = []
        for _ in range(rounds):
            if not self.outbox:
                break
            batch, self.outbox = self.outbox, []
            for msg in batch:
                if (
                    msg.dst in self.down
                    or (msg.src, msg.dst) in self.cut
                    or (accept is not None and not accept(msg))
                ):
                    dropped.append(msg)
                    continue
                self.nodes[msg.dst].step(msg)
                self.process(msg.dst)
        return dropped

    def elect(self, node_id: NodeId) -> RaftNode:
        """Make ``node_id`` campaign now (as if its timer fired) and deliver until quiet."""
        node = self.nodes[node_id]
        timeout = node.config.election_ticks_max
        for _ in range(timeout):
            node.tick()
            if node.role is not Role.FOLLOWER:
                break
        self.process(node_id)
        self.deliver()
        return node

    def leader(self) -> RaftNode | None:
        leaders = [n for i, n in self.nodes.items() if i not in self.down and n.role is Role.LEADER]
        return max(leaders, key=lambda n: n.term) if leaders else None
