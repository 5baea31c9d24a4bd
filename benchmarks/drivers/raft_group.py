"""A Raft group of sans-I/O ``RaftNode``s in one process, for measuring the core without I/O.

Two drivers over the same nodes:

- ``InstantGroup``: every Ready is handled at once (persisting is a no-op, the core keeps its
  own log) and messages wait in an outbox until ``deliver()``; what is left to measure is the
  core's own CPU per proposal.
- ``TimedGroup``: a virtual millisecond clock with seeded network and fsync delays and a client
  proposing every few milliseconds, driven the way lockd's shell drives a node (inputs that
  arrive during an fsync wait for the next Ready; a leader sends before its own write unless its
  term or vote changes); it reports commit latencies in virtual milliseconds.

No faults and no invariant checks: that is the test suite's simulation. Every run is bounded.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.core import RaftNode
from reference_impl.raft.errors import NotLeader, ProposalDropped
from reference_impl.raft.types import HardState, Message, NodeId, Ready, RestoredState, Role

COMPACT_EVERY = 10_000  # entries kept in memory before a node compacts its log


def new_nodes(size: int, seed: int, **config: Any) -> dict[NodeId, RaftNode]:
    """``size`` fresh nodes n1..nN with seeded election timers."""
    ids = tuple(f"n{i}" for i in range(1, size + 1))
    rng = random.Random(seed)
    empty = RestoredState(HardState(), None, ())
    return {
        node_id: RaftNode(
            RaftConfig(node_id, ids, **config), empty, random.Random(rng.getrandbits(32))
        )
        for node_id in ids
    }


def _compact_if_long(node: RaftNode) -> None:
    if node.applied_index - node.log.snapshot_index >= COMPACT_EVERY:
        node.compact(node.applied_index, b"")


class InstantGroup:
    """Readys handled at once; messages delivered in rounds by ``deliver()``."""

    def __init__(self, size: int = 3, seed: int = 1, **config: Any) -> None:
        self.nodes = new_nodes(size, seed, **config)
        self.outbox: list[Message] = []

    def process(self, node_id: NodeId) -> None:
        """Handle every Ready the node has: its messages go to the outbox."""
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            self.outbox.extend(ready.messages)
            node.advance(ready)
        _compact_if_long(node)

    def deliver(self, rounds: int = 1000) -> None:
        """Deliver queued messages, and what they cause, until quiet (at most ``rounds``)."""
        for _ in range(rounds):
            if not self.outbox:
                return
            batch, self.outbox = self.outbox, []
            for msg in batch:
                self.nodes[msg.dst].step(msg)
                self.process(msg.dst)

    def elect(self, node_id: NodeId) -> RaftNode:
        """Make ``node_id`` campaign now (as if its timer fired) and deliver until quiet."""
        node = self.nodes[node_id]
        for _ in range(node.config.election_ticks_max):
            node.tick()
            if node.role is not Role.FOLLOWER:
                break
        self.process(node_id)
        self.deliver()
        if node.role is not Role.LEADER:
            raise RuntimeError(f"{node_id} did not win its election")
        return node


@dataclass
class _Shell:
    """One node as lockd's shell sees it: busy while a write is being fsynced."""

    node: RaftNode
    durable: tuple[int, NodeId | None] = (0, None)  # (term, vote) on disk
    busy: bool = False
    inbox: deque[Any] = field(default_factory=deque)
    proposed_at: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (term, ms)


@dataclass(frozen=True)
class TimedOptions:
    """One timed run: group size, virtual length and the delays drawn per message and fsync."""

    nodes: int = 3
    duration_ms: int = 3_000
    tick_ms: int = 50
    network_ms: tuple[int, int] = (1, 5)
    fsync_ms: tuple[int, int] = (1, 4)
    propose_every_ms: tuple[int, int] = (1, 3)
    max_inflight: int = 16
    max_entries_per_append: int = 256


class TimedGroup:
    """A fault-free group on a virtual clock; ``run()`` returns commit latencies in virtual ms."""

    def __init__(self, seed: int, options: TimedOptions) -> None:
        self.options = options
        self.rng = random.Random(seed)
        nodes = new_nodes(
            options.nodes,
            seed,
            max_inflight=options.max_inflight,
            max_entries_per_append=options.max_entries_per_append,
        )
        self.shells = {node_id: _Shell(node) for node_id, node in nodes.items()}
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = 0
        self.commit_latencies_ms: list[int] = []

    def run(self) -> list[int]:
        for node_id in self.shells:
            self._at(self.rng.randrange(self.options.tick_ms), self._ticker(node_id))
        self._at(self.rng.randint(*self.options.propose_every_ms), self._client)
        while self._queue and self._queue[0][0] <= self.options.duration_ms:
            self.now, _, action = heapq.heappop(self._queue)
            action()
        return self.commit_latencies_ms

    def _at(self, delay: int, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (self.now + delay, self._sequence, action))

    def _ticker(self, node_id: NodeId) -> Callable[[], None]:
        def tick() -> None:
            self._input(node_id, "tick")
            self._at(self.options.tick_ms, tick)

        return tick

    def _client(self) -> None:
        leaders = [i for i, s in self.shells.items() if s.node.role is Role.LEADER]
        if leaders:
            self._input(self.rng.choice(leaders), ("propose", b"lock-acquire:key:%d" % self.now))
        self._at(self.rng.randint(*self.options.propose_every_ms), self._client)

    def _input(self, node_id: NodeId, item: Any) -> None:
        shell = self.shells[node_id]
        if shell.busy:
            shell.inbox.append(item)
            return
        self._feed(shell, item)
        self._pump(node_id)

    def _feed(self, shell: _Shell, item: Any) -> None:
        if item == "tick":
            shell.node.tick()
        elif isinstance(item, tuple):
            try:
                index = shell.node.propose(item[1])
            except (NotLeader, ProposalDropped):
                return
            shell.proposed_at[index] = (shell.node.term, self.now)
        else:
            shell.node.step(item)

    def _pump(self, node_id: NodeId) -> None:
        shell = self.shells[node_id]
        while not shell.busy and shell.node.has_ready():
            ready = shell.node.ready()
            if ready.hard_state is None and not ready.entries and ready.snapshot is None:
                self._finish(node_id, ready, sent=False)
                continue
            written = ready.hard_state
            term_vote = (written.term, written.vote) if written is not None else shell.durable
            sent_first = ready.role is Role.LEADER and term_vote == shell.durable
            if sent_first:
                self._send(ready.messages)
            shell.busy = True

            def fsynced(
                ready: Ready = ready,
                sent: bool = sent_first,
                term_vote: tuple[int, NodeId | None] = term_vote,
            ) -> None:
                shell.durable = term_vote
                shell.busy = False
                self._finish(node_id, ready, sent=sent)
                while shell.inbox and not shell.busy:
                    self._feed(shell, shell.inbox.popleft())
                self._pump(node_id)

            self._at(self.rng.randint(*self.options.fsync_ms), fsynced)

    def _finish(self, node_id: NodeId, ready: Ready, *, sent: bool) -> None:
        shell = self.shells[node_id]
        if not sent:
            self._send(ready.messages)
        for entry in ready.committed:
            proposed = shell.proposed_at.pop(entry.index, None)
            if proposed is not None and proposed[0] == entry.term:
                self.commit_latencies_ms.append(self.now - proposed[1])
        shell.node.advance(ready)
        _compact_if_long(shell.node)

    def _send(self, messages: tuple[Message, ...]) -> None:
        for msg in messages:
            self._at(self.rng.randint(*self.options.network_ms), partial(self._input, msg.dst, msg))
