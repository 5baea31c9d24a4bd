"""The asyncio shell around the Raft core: one replica of a replicated state machine.

It owns the clock (a tick every ``tick_seconds``), the disk (RaftStorage) and the network
(PeerTransport), and drives the core through its Ready contract.

Writes: a follower writes each batch inline (one fsync, then its acks): everything that arrives
meanwhile waits in the socket buffers and the inbox and goes into the next Ready together, the
group commit. The leader sends its AppendEntries first and then writes its own batch, inline by
default or (``async_leader_writes``) in a background writer thread (etcd's asynchronous storage
writes); either way its fsync overlaps the followers', and the core counts the leader's own log
toward the commit only once it is durable (``RaftNode.advance``/``persisted``). Snapshots are
written by a worker thread; automatic snapshots are serialised in a forked child
(server/snapshotter.py), off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.core import RaftNode
from reference_impl.raft.errors import (
    NotLeader,
    ProposalDropped,
    ProposalTimeout,
    RaftConfigError,
    RaftError,
    ReadIndexTimeout,
)
from reference_impl.raft.metrics import ReplicaMetrics
from reference_impl.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    ReadState,
    Ready,
    Role,
)
from reference_impl.server.background_writer import BackgroundWriter
from reference_impl.server.peer_transport import PeerTlsContexts, PeerTransport
from reference_impl.server.snapshotter import Snapshotter, TakenSnapshot
from reference_impl.storage.raft_storage import RaftStorage, SaveStats

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
"""How long stop() lets the loop finish the Ready it is persisting (a slow fsync)."""

DEFAULT_BATCH_YIELDS = 3
"""Event-loop rounds the raft loop lets pass before taking its inputs (see ``_run``)."""

DEFAULT_SNAPSHOT_EVERY = 100_000
"""Applied entries between automatic snapshots (etcd's default --snapshot-count since 3.2).
Every 10,000 measured 10% fewer pairs/s at 32 clients (forked snapshots of the event log every
~1.4 s on every node; docs/performance.md); the cost is memory (the log kept since the last
snapshot) and a longer log replay when a node restarts."""


class StateMachine(Protocol):
    """What the replica replicates. ``apply`` must be deterministic: every replica applies the same
    entries in the same order and must reach the same state and results. It must not raise (return
    an error value instead): an exception stops the replica, since its state is then unknown.
    A Replica starts with a fresh state machine: on start it is restored from the last snapshot
    (if any) and the log after it is applied again."""

    def apply(self, index: int, data: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes, index: int) -> None: ...


class LeadershipTransferFailed(RaftError):
    """The target did not become leader in time; the old leader may or may not still lead."""


class ReplicaStopped(RaftError):
    """The replica was stopped (or not started) while the request was pending."""


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Proposal:
    data: bytes
    future: asyncio.Future[Any]
    started: float


@dataclass(frozen=True, slots=True)
class _Read:
    ctx: bytes
    future: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _Transfer:
    target: NodeId
    future: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _Persisted:
    """The background writer made entries up to (index, term) durable."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class _WriteFailed:
    error: BaseException


@dataclass(frozen=True, slots=True)
class _PendingProposal:
    term: int
    future: asyncio.Future[Any]
    started: float


_Input = _Tick | _Proposal | _Read | _Transfer | _Persisted | _WriteFailed | Message
_TICK = _Tick()


class Replica:
    """One member of a Raft group on this host. See docs/raft.md."""

    def __init__(
        self,
        node_id: str,
        peers: Mapping[str, tuple[str, int]],
        data_dir: Path,
        state_machine: StateMachine,
        *,
        config: RaftConfig | None = None,
        tick_seconds: float = 0.05,
        fsync: bool = True,
        on_leader_change: Callable[[str | None, int], None] | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        unsafe_no_fsync: bool = False,
        unsafe_no_check_quorum: bool = False,
        rng: random.Random | None = None,
        peer_tls: PeerTlsContexts | None = None,
        async_leader_writes: bool = False,
        batch_yields: int = DEFAULT_BATCH_YIELDS,
        wal_zeroed_tail_bytes: int = 4 << 20,
    ) -> None:
        if node_id not in peers:
            raise RaftConfigError(f"peers must include this node {node_id!r} with its peer port")
        if tick_seconds <= 0:
            raise RaftConfigError(f"tick_seconds must be positive, got {tick_seconds}")
        if snapshot_every < 1:
            raise RaftConfigError(f"snapshot_every must be >= 1, got {snapshot_every}")
        if config is None:
            config = RaftConfig(node_id, tuple(sorted(peers)))
        if config.node_id != node_id or set(config.voters) != set(peers):
            raise RaftConfigError(
                f"config is for {config.node_id!r} with voters {list(config.voters)}, but the "
                f"replica is {node_id!r} with peers {sorted(peers)}"
            )
        if unsafe_no_check_quorum and not config.unsafe_no_check_quorum:
            config = dataclasses.replace(config, unsafe_no_check_quorum=True)
        self._id = node_id
        self._peers = dict(peers)
        self._config = config
        self._state_machine = state_machine
        self._tick_seconds = tick_seconds
        self._snapshot_every = snapshot_every
        self._on_leader_change = on_leader_change
        self._rng = rng or random.Random()
        self._storage = RaftStorage(
            Path(data_dir),
            fsync=fsync and not unsafe_no_fsync,
            zeroed_tail_bytes=wal_zeroed_tail_bytes,
        )
        self.metrics = ReplicaMetrics()
        self._node: RaftNode | None = None
        self._transport: PeerTransport | None = None
        self._peer_tls = peer_tls
        self._async_leader_writes = async_leader_writes
        self._batch_yields = batch_yields
        self._inbox: deque[_Input] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stopping = False
        self._applied = 0
        self._last_snapshot_index = 0
        self._leader: NodeId | None = None
        self._term = 0
        self._role = Role.FOLLOWER
        self._proposals: dict[int, _PendingProposal] = {}
        self._reads: dict[bytes, tuple[asyncio.Future[None], float]] = {}
        self._reads_waiting_apply: list[tuple[int, asyncio.Future[None], float]] = []
        self._read_ids = itertools.count(1)
        self._deadlines: list[tuple[float, int, asyncio.Future[Any], float]] = []
        self._deadline_ids = itertools.count()
        self._leader_changed = asyncio.Event()
        self._persisted_hard_state = HardState()
        self._writer: BackgroundWriter | None = None
        self.snapshotter = Snapshotter(
            f"{node_id} snapshots", state_machine.snapshot, self._wake.set
        )
        """Automatic snapshots (in process or in a forked child); its figures are read-only."""

    # -----------------------------------------------------------------------------------------
    # State

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def leader_id(self) -> NodeId | None:
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def commit_index(self) -> int:
        return self._node.commit_index if self._node else 0

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def running(self) -> bool:
        return self._running

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        """Load durable state, restore the state machine, listen, and start ticking."""
        if self._running:
            return
        if self._node is not None:
            raise ReplicaStopped(
                f"replica {self._id} was already started once; create a new Replica with a fresh "
                "state machine to restart (the log is re-applied from the last snapshot)"
            )
        restored = await asyncio.to_thread(self._storage.load)
        if restored.snapshot is not None:
            meta = restored.snapshot.meta
            self._state_machine.restore(restored.snapshot.data, meta.index)
            self._applied = meta.index
            self._last_snapshot_index = meta.index
        self._persisted_hard_state = restored.hard_state
        self._node = RaftNode(self._config, restored, self._rng)
        self._term = self._node.term
        self._transport = PeerTransport(
            self._id, self._peers, self._deliver, self.metrics, tls=self._peer_tls
        )
        await self._transport.start()
        self._writer = BackgroundWriter(self._storage, self._written, f"wal-{self._id}")
        self._running = True
        self._tasks = [
            asyncio.create_task(self._run(), name=f"raft-{self._id}"),
            asyncio.create_task(self._tick_loop(), name=f"tick-{self._id}"),
        ]
        logger.info(
            "%s: started at term %d, %d entries, applied %d",
            self._id,
            self._node.term,
            self._node.last_index,
            self._applied,
        )

    async def stop(self) -> None:
        """Stop ticking and talking; pending requests fail with ReplicaStopped."""
        if not self._tasks:
            return
        self._running = False
        self._stopping = True
        self._wake.set()
        run_task, *others = self._tasks
        for task in others:
            task.cancel()
        # Let the loop finish the Ready in hand (an fsync in a worker thread cannot be
        # cancelled, and closing its file under it would be worse); cancel only if it hangs.
        done, _ = await asyncio.wait([run_task], timeout=STOP_GRACE_SECONDS)
        if not done:
            logger.error("%s: raft loop did not stop in %.0fs", self._id, STOP_GRACE_SECONDS)
            run_task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._stopping = False
        self.snapshotter.stop()  # a child serialising must not outlive the replica
        if self._writer is not None:
            # Writes in flight finish (a worker's fsync cannot be interrupted anyway).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_SECONDS):
                    await self._writer.drain()
            if not await asyncio.to_thread(self._writer.close, STOP_GRACE_SECONDS):
                logger.error("%s: the storage writer is stuck in a write; not waiting", self._id)
            self._writer = None
        if self._transport is not None:
            await self._transport.stop()
            self._transport = None
        self._fail_everything(ReplicaStopped(f"{self._id} stopped"))
        self._storage.close()

    # -----------------------------------------------------------------------------------------
    # Requests

    async def propose(self, data: bytes, *, timeout: float) -> Any:
        """Replicate ``data`` and return what ``state_machine.apply`` returned for it.

        Raises NotLeader when this replica is not the leader (nothing was proposed),
        ProposalDropped or ProposalTimeout when the outcome is unknown (indeterminate).
        """
        return await self.propose_future(data, timeout=timeout)

    def propose_future(self, data: bytes, *, timeout: float) -> asyncio.Future[Any]:
        """``propose`` without a coroutine: the future resolves as ``propose`` returns or raises.
        For callers that finish a request in a callback instead of a task per request."""
        self._require_running()
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader, self._id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self._post(_Proposal(data, future, started))
        # The tick loop fails it at its deadline (one heap entry instead of a timer handle
        # armed and cancelled per proposal: measurable on the leader at thousands per second).
        heapq.heappush(
            self._deadlines, (started + timeout, next(self._deadline_ids), future, timeout)
        )
        self.metrics.proposals += 1
        return future

    def _fail_proposal(self, future: asyncio.Future[Any], error: RaftError) -> None:
        if not future.done():
            future.set_exception(error)
            self.metrics.proposals_failed += 1

    async def linearizable_read(self, *, timeout: float) -> None:
        """Return once this replica's state machine reflects every write that completed before
        the call (ReadIndex; on a follower the leader is asked for the index)."""
        self._require_running()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ctx = f"{self._id}:{next(self._read_ids)}".encode()
        self._post(_Read(ctx, future))
        self.metrics.reads += 1
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            self._reads.pop(ctx, None)  # an answer may never come (lost request)
            self.metrics.reads_failed += 1
            raise ReadIndexTimeout(
                f"{self._id}: read index not confirmed within {timeout:.3f}s (leader "
                f"{self._leader or 'unknown'})"
            ) from None
        except RaftError:
            self.metrics.reads_failed += 1
            raise

    async def transfer_leadership(self, target: str, *, timeout: float | None = None) -> None:
        """Hand leadership to ``target`` and wait until this replica sees it lead."""
        self._require_running()
        if timeout is None:
            timeout = 4 * self._config.election_ticks_max * self._tick_seconds
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._post(_Transfer(target, future))
        deadline = time.monotonic() + timeout
        await asyncio.wait_for(future, timeout)
        while self._leader != target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LeadershipTransferFailed(
                    f"{target} did not become leader within {timeout:.2f}s (leader is "
                    f"{self._leader or 'unknown'})"
                )
            self._leader_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leader_changed.wait(), remaining)

    # -----------------------------------------------------------------------------------------
    # The loop

    def _require_running(self) -> None:
        if not self._running:
            raise ReplicaStopped(f"replica {self._id} is not running")

    def _post(self, item: _Input) -> None:
        self._inbox.append(item)
        self._wake.set()

    def _deliver(self, msg: Message) -> None:
        self._post(msg)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            self._post(_TICK)
            self._expire_proposals(time.perf_counter())

    def _expire_proposals(self, now: float) -> None:
        """Fail proposals whose caller's timeout passed (at most a tick late); runs on its own
        task, so a raft loop stuck on a slow disk cannot hold callers past their deadline."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, future, timeout = heapq.heappop(deadlines)
            self._fail_proposal(
                future,
                ProposalTimeout(
                    f"{self._id}: proposal not applied within {timeout:.3f}s; it may still commit"
                ),
            )

    async def _run(self) -> None:
        node = self._node
        assert node is not None
        try:
            while not self._stopping:
                await self._wake.wait()
                # Let the event loop go round a few more times before taking the inputs: a
                # request read in one round proposes in the next, acks in flight are read, so
                # one Ready carries more (fewer messages and fsyncs per entry; measured in
                # docs/performance.md). An idle loop goes round in microseconds.
                for _ in range(self._batch_yields):
                    await asyncio.sleep(0)
                self._wake.clear()
                while self._inbox and not self._stopping:
                    self._handle_input(node, self._inbox.popleft())
                while node.has_ready() and not self._stopping:
                    await self._handle_ready(node, node.ready())
                taken = self.snapshotter.take_result()
                if taken is not None and not self._stopping:
                    await self._compact(node, taken)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a failing disk: stop serving rather than keep acting on unknown state.
            logger.critical(
                "%s: raft loop failed; the replica stops serving", self._id, exc_info=True
            )
            self._running = False
            self._role = Role.FOLLOWER
            self._fail_everything(ReplicaStopped(f"{self._id} failed; see its log"))

    def _handle_input(self, node: RaftNode, item: _Input) -> None:
        if isinstance(item, _Tick):
            node.tick()
        elif isinstance(item, _Proposal):
            if item.future.done():
                return
            try:
                index = node.propose(item.data)
            except RaftError as error:
                self._fail_proposal(item.future, error)
                return
            self._proposals[index] = _PendingProposal(node.term, item.future, item.started)
        elif isinstance(item, _Read):
            if item.future.done():
                return
            try:
                node.read_index(item.ctx)
            except RaftError as error:
                item.future.set_exception(error)
                return
            self._reads[item.ctx] = (item.future, time.perf_counter())
        elif isinstance(item, _Transfer):
            try:
                node.transfer_leadership(item.target)
            except (RaftError, ValueError) as error:
                if not item.future.done():
                    item.future.set_exception(error)
                return
            if not item.future.done():
                item.future.set_result(None)
        elif isinstance(item, _Persisted):
            node.persisted(item.index, item.term)
        elif isinstance(item, _WriteFailed):
            raise item.error
        else:
            node.step(item)

    def _written(
        self, last: Entry | None, stats: SaveStats | None, error: BaseException | None
    ) -> None:
        """The background writer finished a write (called on the loop)."""
        if error is not None:
            self._post(_WriteFailed(error))
            return
        if stats is not None and last is not None:
            self._record_save(stats)
        if last is not None:
            self._post(_Persisted(last.index, last.term))

    async def _handle_ready(self, node: RaftNode, ready: Ready) -> None:
        transport = self._transport
        writer = self._writer
        assert transport is not None
        assert writer is not None
        # A leader sends its AppendEntries before its own write (Raft thesis 10.2.1), so its
        # fsync overlaps the followers'. Safe: the core counts the leader's own entries toward
        # the commit only once they are reported durable (advance(entries_persisted=...)), and
        # every committed entry is then durable on a majority. A term or vote change is never
        # sent ahead of its write. The write itself is inline by default; with
        # async_leader_writes a background thread makes it (etcd's AsyncStorageWrites), which
        # keeps the loop serving through a slow fsync but costs a thread hand-off and back per
        # write (docs/performance.md: at 8 clients here 20-28% more CPU per pair and 10-17%
        # fewer pairs/s).
        leader_append = (
            ready.role is Role.LEADER
            and ready.snapshot is None
            and not self._must_sync(ready.hard_state)
        )
        in_background = leader_append and self._async_leader_writes
        if in_background:
            transport.send_all(ready.messages)
            if ready.entries or ready.hard_state is not None:
                writer.submit(ready.hard_state, ready.entries)
        elif leader_append and not writer.busy:
            transport.send_all(ready.messages)
            self._write_inline(ready)
        else:
            # A former leader's writes land first: the WAL is written in order.
            if writer.busy:
                await writer.drain()
            if ready.snapshot is not None:
                # Big and rare: written by a worker thread so the loop keeps serving meanwhile.
                self._record_save(
                    await asyncio.to_thread(
                        self._storage.save, ready.hard_state, ready.entries, ready.snapshot
                    )
                )
            else:
                # A follower's batch: its acks wait for it, they promise what is on disk.
                self._write_inline(ready)
            transport.send_all(ready.messages)
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        self._observe_role(ready)
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            self._state_machine.restore(ready.snapshot.data, meta.index)
            self._applied = meta.index
            self._last_snapshot_index = meta.index
            self.metrics.snapshots_installed += 1
            self._fail_proposals_up_to(meta.index)
        self._apply(ready.committed)
        self._accept_read_states(ready.read_states)
        self._release_reads()
        node.advance(ready, entries_persisted=not in_background)
        if (
            self._applied - self._last_snapshot_index >= self._snapshot_every
            and self.snapshotter.may_start()
        ):
            await self._take_snapshot(node)

    def _write_inline(self, ready: Ready) -> None:
        """Write a Ready's entries and hard state on the loop. The fsync is short (0.2-2 ms
        here) and inline costs less than a thread's hand-off and back (docs/performance.md)."""
        if ready.entries or self._must_sync(ready.hard_state):
            self._record_save(self._storage.save(ready.hard_state, ready.entries))
        elif ready.hard_state is not None:
            # Only the commit index moved: write it, but do not wait for the disk.
            self._storage.save(ready.hard_state, (), sync=False)

    def _record_save(self, stats: SaveStats) -> None:
        self.metrics.fsyncs += 1
        self.metrics.records_persisted += stats.records
        self.metrics.fsync_seconds.observe(stats.fsync_seconds)
        self.metrics.records_per_fsync.observe(stats.records)

    def _apply(self, committed: Sequence[Entry]) -> None:
        for entry in committed:
            result = None
            if entry.kind is EntryKind.NORMAL:
                result = self._state_machine.apply(entry.index, entry.data)
            self._applied = entry.index
            pending = self._proposals.pop(entry.index, None)
            if pending is not None and not pending.future.done():
                if pending.term == entry.term:
                    pending.future.set_result(result)
                    self.metrics.proposal_seconds.observe(time.perf_counter() - pending.started)
                else:
                    self._fail_proposal(
                        pending.future,
                        ProposalDropped(
                            f"entry {entry.index} was replaced by a later leader: not committed"
                        ),
                    )

    def _must_sync(self, hard_state: HardState | None) -> bool:
        """Term and vote must be on disk before messages that depend on them; commit need not."""
        if hard_state is None:
            return False
        previous = self._persisted_hard_state
        return hard_state.term != previous.term or hard_state.vote != previous.vote

    async def _take_snapshot(self, node: RaftNode) -> None:
        """Snapshot the state machine as of the applied index: in process when that is cheap,
        else in a forked child whose result ``_run`` compacts with when it is ready."""
        taken = self.snapshotter.start(self._applied)
        if taken is not None:
            await self._compact(node, taken)

    async def _compact(self, node: RaftNode, taken: TakenSnapshot) -> None:
        """Compact the log up to the snapshot's index (not the applied index now: a child's
        snapshot is of the state at its fork) and persist the snapshot."""
        if not node.log.snapshot_index < taken.index <= node.applied_index:
            logger.info(
                "%s: dropped the snapshot at index %d: the log was meanwhile replaced by the "
                "leader's snapshot at %d (applied %d)",
                self._id,
                taken.index,
                node.log.snapshot_index,
                node.applied_index,
            )
            return
        writer = self._writer
        assert writer is not None
        # The snapshot replaces the WAL: every handed-out entry must be in it first.
        await writer.drain()
        snapshot = node.compact(taken.index, taken.data)
        await asyncio.to_thread(self._storage.save, None, (), snapshot)
        self._last_snapshot_index = taken.index
        self.metrics.snapshots_taken += 1
        fork = self.snapshotter.last_fork_seconds or 0.0
        logger.info(
            "%s: snapshot at index %d: %.1f MiB serialised in %.3fs %s",
            self._id,
            taken.index,
            len(taken.data) / 2**20,
            taken.serialise_seconds,
            f"in a child (fork {fork * 1000:.1f} ms)" if taken.in_child else "in process",
        )

    def _observe_role(self, ready: Ready) -> None:
        was_leader = self._role is Role.LEADER
        if ready.role is Role.CANDIDATE and self._role is not Role.CANDIDATE:
            self.metrics.elections_started += 1
        self._role = ready.role
        changed = ready.leader != self._leader or ready.term != self._term
        leader_changed = ready.leader != self._leader
        self._leader = ready.leader
        self._term = ready.term
        if was_leader and ready.role is not Role.LEADER:
            self._fail_proposals_up_to(None)
        if leader_changed:
            self.metrics.leader_changes += 1
            self._fail_reads(NotLeader(ready.leader, self._id))
            self._leader_changed.set()
        if changed and self._on_leader_change is not None:
            try:
                self._on_leader_change(ready.leader, ready.term)
            except Exception:
                logger.exception("%s: on_leader_change callback failed", self._id)

    def _accept_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        for read_state in read_states:
            pending = self._reads.pop(read_state.ctx, None)
            if pending is not None:
                future, started = pending
                self._reads_waiting_apply.append((read_state.index, future, started))

    def _release_reads(self) -> None:
        if not self._reads_waiting_apply:
            return
        still_waiting = []
        for index, future, started in self._reads_waiting_apply:
            if index <= self._applied:
                if not future.done():
                    future.set_result(None)
                    self.metrics.read_seconds.observe(time.perf_counter() - started)
            else:
                still_waiting.append((index, future, started))
        self._reads_waiting_apply = still_waiting

    def _fail_proposals_up_to(self, index: int | None) -> None:
        for proposal_index in list(self._proposals):
            if index is None or proposal_index <= index:
                pending = self._proposals.pop(proposal_index)
                self._fail_proposal(
                    pending.future,
                    ProposalDropped(
                        f"{self._id} lost leadership before entry {proposal_index} applied; "
                        "it may still commit"
                    ),
                )

    def _fail_reads(self, error: RaftError) -> None:
        for future, _ in self._reads.values():
            if not future.done():
                future.set_exception(error)
        self._reads = {}

    def _fail_everything(self, error: RaftError) -> None:
        self._deadlines = []
        for pending in self._proposals.values():
            self._fail_proposal(pending.future, error)
        self._proposals = {}
        self._fail_reads(error)
        for _, future, _ in self._reads_waiting_apply:
            if not future.done():
                future.set_exception(error)
        self._reads_waiting_apply = []
        for item in self._inbox:
            if isinstance(item, _Proposal):
                self._fail_proposal(item.future, error)
            elif isinstance(item, _Read | _Transfer) and not item.future.done():
                item.future.set_exception(error)
        self._inbox.clear()
