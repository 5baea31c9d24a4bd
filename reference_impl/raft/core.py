"""The Raft core: a pure state machine, shaped like etcd's raft.

Ticks, messages and proposals go in; a Ready comes out listing what to persist, send, install and
apply. No sockets, clocks, threads or files here, so the same code runs under the asyncio shell
(reference_impl/server/replica.py) and under the deterministic simulation in the tests.

Contract for the caller, for every Ready: persist ``snapshot``, ``hard_state`` and ``entries``
with one fsync, THEN send ``messages``, install ``snapshot`` into the state machine, apply
``committed`` in order, then call ``advance(ready)``. Do not step the node between ``ready()`` and
``advance()``.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from dataclasses import dataclass, field

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.errors import NotLeader, ProposalDropped, ProposalTooLarge
from reference_impl.raft.limits import MAX_APPEND_BYTES, MAX_CTX_BYTES, MAX_ENTRY_BYTES
from reference_impl.raft.log import RaftLog
from reference_impl.raft.types import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Ready,
    RestoredState,
    Role,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

logger = logging.getLogger(__name__)

MAX_UNACKED_ROUNDS = 1024
"""Heartbeat rounds remembered while no majority acknowledges them (~50 s at 50 ms a tick)."""


class ReplicationState(enum.Enum):
    """How the leader talks to one follower (etcd's Progress states).

    PROBE: one AppendEntries at a time until the follower's log is found to match.
    REPLICATE: pipelined, up to ``max_inflight`` AppendEntries in flight.
    SNAPSHOT: an InstallSnapshot is in flight; wait for its answer.
    """

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower."""

    match: int = 0
    next: int = 1
    state: ReplicationState = ReplicationState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)
    pending_snapshot: int = 0
    snapshot_ticks: int = 0
    recent_active: bool = False
    acked_round: int = 0

    def become_probe(self, next_index: int) -> None:
        self.state = ReplicationState.PROBE
        self.next = next_index
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def paused(self, max_inflight: int) -> bool:
        if self.state is ReplicationState.PROBE:
            return self.probe_sent
        if self.state is ReplicationState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True


@dataclass(frozen=True, slots=True)
class _PendingRead:
    ctx: bytes
    index: int
    round: int
    requester: NodeId


class RaftNode:
    """One Raft participant. See the module docstring for the Ready contract."""

    def __init__(self, config: RaftConfig, restored: RestoredState, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._id = config.node_id
        self._peers = tuple(v for v in config.voters if v != config.node_id)
        self._log = RaftLog(restored.snapshot, restored.entries)
        hard = restored.hard_state
        # An entry can be durable while the HardState that came with it is not (a torn batch);
        # the term never goes below the newest entry's term.
        self._term = max(hard.term, self._log.last_term)
        self._vote: NodeId | None = hard.vote if hard.term == self._term else None
        commit = max(hard.commit, self._log.snapshot_index)
        if commit > self._log.last_index:
            logger.error(
                "%s: restored commit %d is beyond the restored log (last index %d); clamping",
                self._id,
                commit,
                self._log.last_index,
            )
            commit = self._log.last_index
        self._log.commit = commit
        self._persisted_hard_state = hard
        self._role = Role.FOLLOWER
        self._leader: NodeId | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._draw_election_timeout()
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._received_snapshot: Snapshot | None = None
        self._ticks = 0
        self._read_round = 0
        self._round_sent_tick: dict[int, int] = {}
        self._quorum_round = 0
        self._lease_start_tick: int | None = None
        self._pending_reads: list[_PendingRead] = []
        self._reads_awaiting_commit: list[tuple[bytes, NodeId]] = []
        self._lead_transferee: NodeId | None = None
        self._replicate_pending = False
        self._commit_broadcast_pending = False
        if config.unsafe_no_check_quorum:
            logger.warning(
                "%s: UNSAFE: check-quorum is off and reads are served without a quorum; a "
                "deposed leader keeps acting. Use only to validate the bench.",
                self._id,
            )

    # -----------------------------------------------------------------------------------------
    # Properties

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
    def leader(self) -> NodeId | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._log.commit

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def vote(self) -> NodeId | None:
        return self._vote

    @property
    def log(self) -> RaftLog:
        """The in-memory log, for inspection by tests and the simulation (do not mutate)."""
        return self._log

    @property
    def config(self) -> RaftConfig:
        return self._config

    # -----------------------------------------------------------------------------------------
    # Inputs

    def tick(self) -> None:
        """Advance logical time by one tick (the server ticks every 50 ms)."""
        self._ticks += 1
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout:
                self._start_election(transfer=False)

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log; returns its index. It is committed once it shows up in
        ``Ready.committed`` at that index with this term (a later leader may overwrite it)."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader, self._id)
        if self._lead_transferee is not None:
            raise ProposalDropped(
                f"{self._id} is transferring leadership to {self._lead_transferee}; retry there"
            )
        if len(data) > MAX_ENTRY_BYTES:
            raise ProposalTooLarge(
                f"proposal of {len(data)} bytes exceeds MAX_ENTRY_BYTES ({MAX_ENTRY_BYTES})"
            )
        return self._append_local(data, EntryKind.NORMAL)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; a ReadState(ctx, index) comes in a later Ready.

        On a follower the request is forwarded to the leader. If leadership is lost meanwhile no
        answer comes: the caller times out and retries.
        """
        if len(ctx) > MAX_CTX_BYTES:
            raise ValueError(f"read ctx of {len(ctx)} bytes exceeds MAX_CTX_BYTES={MAX_CTX_BYTES}")
        if self._role is Role.LEADER:
            self._leader_read(ctx, self._id)
        elif self._leader is None:
            raise NotLeader(None, self._id)
        else:
            self._send(ReadIndexRequest(self._id, self._leader, self._term, ctx))

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to ``target`` once its log is up to date (TimeoutNow).

        Proposals are refused while the transfer runs; it is abandoned after an election timeout.
        """
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader, self._id)
        if target not in self._peers:
            if target == self._id:
                return
            raise ValueError(f"cannot transfer leadership to {target!r}: not a voter")
        if self._lead_transferee == target:
            return
        self._lead_transferee = target
        self._election_elapsed = 0
        progress = self._progress[target]
        if progress.match == self._log.last_index:
            self._send(TimeoutNow(self._id, target, self._term))
        else:
            self._send_append(target)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Record the caller's state-machine snapshot at ``index`` (<= applied) and forget the log
        up to it. The caller persists the returned snapshot (RaftStorage.save)."""
        if index <= self._log.snapshot_index:
            raise ValueError(
                f"snapshot index {index} is not beyond the current one ({self._log.snapshot_index})"
            )
        if index > self._log.applied:
            raise ValueError(f"cannot snapshot at {index}: only {self._log.applied} is applied")
        term = self._log.term_at(index)
        assert term is not None
        snapshot = Snapshot(SnapshotMeta(index, term, self._config.voters), data)
        self._log.compact(snapshot)
        return snapshot

    def step(self, msg: Message) -> None:  # noqa: C901, PLR0912 - Raft's dispatch by term, type and role (as etcd-io/raft Step)
        """Feed one message from a peer. Invalid messages are logged and dropped."""
        problem = self._validate(msg)
        if problem is not None:
            logger.warning(
                "%s: dropped invalid %s from %r: %s",
                self._id,
                type(msg).__name__,
                getattr(msg, "src", "?"),
                problem,
            )
            return
        if msg.term > self._term:
            if not self._accept_higher_term(msg):
                return
        elif msg.term < self._term:
            self._answer_stale(msg)
            return
        if isinstance(msg, VoteRequest):
            self._handle_vote_request(msg)
        elif isinstance(msg, VoteResponse):
            self._handle_vote_response(msg)
        elif isinstance(msg, AppendEntries):
            if self._same_term_leader_conflict(msg):
                return
            self._follow(msg.src)
            self._handle_append(msg)
        elif isinstance(msg, InstallSnapshot):
            if self._same_term_leader_conflict(msg):
                return
            self._follow(msg.src)
            self._handle_snapshot(msg)
        elif isinstance(msg, AppendResponse):
            if self._role is Role.LEADER:
                self._handle_append_response(msg)
        elif isinstance(msg, TimeoutNow):
            if self._role is not Role.LEADER:
                logger.info("%s: TimeoutNow from %s, campaigning now", self._id, msg.src)
                self._start_election(transfer=True)
        elif isinstance(msg, ReadIndexRequest):
            if self._role is Role.LEADER:
                self._leader_read(msg.ctx, msg.src)
            else:
                self._send(ReadIndexResponse(self._id, msg.src, self._term, msg.ctx, 0, False))
        elif isinstance(msg, ReadIndexResponse) and msg.success:
            self._read_states.append(ReadState(msg.ctx, msg.index))

    # -----------------------------------------------------------------------------------------
    # Outputs

    def has_ready(self) -> bool:
        self._flush()
        if self._messages or self._read_states or self._received_snapshot is not None:
            return True
        log = self._log
        if log.persisting_index < log.last_index or log.commit > log.applied:
            return True
        persisted = self._persisted_hard_state
        return (
            persisted.term != self._term
            or persisted.vote != self._vote
            or persisted.commit != log.commit
        )

    def ready(self) -> Ready:
        """What to persist, send and apply now. Messages and read states are handed out once."""
        self._flush()
        hard_state = self._current_hard_state()
        entries = self._log.unstable_entries()
        if entries:
            self._log.persisting_to(entries[-1].index)
        ready = Ready(
            hard_state=None if hard_state == self._persisted_hard_state else hard_state,
            entries=entries,
            snapshot=self._received_snapshot,
            messages=tuple(self._messages),
            committed=self._log.committed_to_apply(),
            read_states=tuple(self._read_states),
            role=self._role,
            leader=self._leader,
            term=self._term,
        )
        self._messages = []
        self._read_states = []
        return ready

    def advance(self, ready: Ready, *, entries_persisted: bool = True) -> None:
        """The caller has persisted, sent and applied ``ready``.

        ``entries_persisted=False``: a leader's entries (and its commit-only hard state) are
        still being written in the background (asynchronous storage writes, as etcd's
        AsyncStorageWrites); the caller reports them with ``persisted`` once durable. Until then
        they do not count toward the commit: the leader counts its own log only once durable.
        """
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.entries and entries_persisted:
            last = ready.entries[-1]
            self.persisted(last.index, last.term)
        if ready.snapshot is not None and ready.snapshot is self._received_snapshot:
            self._received_snapshot = None
        if ready.committed:
            self._log.applied = max(self._log.applied, ready.committed[-1].index)

    def persisted(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable (ignored if they were replaced since)."""
        self._log.stable_to(index, term)
        if self._role is Role.LEADER and self._maybe_commit():
            self._commit_broadcast_pending = True

    # -----------------------------------------------------------------------------------------
    # Validation and term handling

    def _validate(self, msg: Message) -> str | None:
        """Why ``msg`` makes no sense (None when it is acceptable)."""
        if not isinstance(msg, MESSAGE_TYPES):
            return f"unknown message type {type(msg).__name__}"
        if msg.dst != self._id:
            return f"addressed to {msg.dst!r}, not to {self._id!r}"
        if msg.src not in self._peers:
            return f"sender {msg.src!r} is not a peer of {self._id!r}"
        if msg.term < 0:
            return f"negative term {msg.term}"
        if isinstance(msg, VoteRequest):
            if msg.last_log_index < 0 or msg.last_log_term < 0:
                return "negative last log index/term"
            if msg.last_log_term > msg.term:
                return f"last log term {msg.last_log_term} is beyond the campaign term {msg.term}"
            if (msg.last_log_index == 0) != (msg.last_log_term == 0):
                return "last log index and term must both be 0 or both be positive"
        elif isinstance(msg, AppendEntries):
            return self._validate_append(msg)
        elif isinstance(msg, AppendResponse):
            if msg.index < 0 or msg.hint_index < 0 or msg.hint_term < 0 or msg.read_round < 0:
                return "negative index, hint or read round"
        elif isinstance(msg, InstallSnapshot):
            meta = msg.snapshot.meta
            if meta.index < 1 or meta.term < 1 or meta.term > msg.term:
                return f"snapshot at index {meta.index} term {meta.term} in term {msg.term}"
        elif isinstance(msg, ReadIndexResponse) and msg.index < 0:
            return "negative read index"
        return None

    @staticmethod
    def _validate_append(msg: AppendEntries) -> str | None:
        if msg.term < 1:
            return "AppendEntries in term 0"
        if msg.prev_index < 0 or msg.prev_term < 0 or msg.commit < 0 or msg.read_round < 0:
            return "negative index, term, commit or read round"
        if msg.prev_term > msg.term:
            return f"prev term {msg.prev_term} is beyond the leader's term {msg.term}"
        if (msg.prev_index == 0) != (msg.prev_term == 0):
            return "prev index and prev term must both be 0 or both be positive"
        expected_index = msg.prev_index + 1
        previous_term = msg.prev_term
        for entry in msg.entries:
            if entry.index != expected_index:
                return f"entries not contiguous: expected index {expected_index}, got {entry.index}"
            if entry.term < previous_term or entry.term > msg.term:
                return f"entry {entry.index} has term {entry.term} out of order"
            if len(entry.data) > MAX_ENTRY_BYTES:
                return f"entry {entry.index} exceeds MAX_ENTRY_BYTES"
            expected_index += 1
            previous_term = entry.term
        return None

    def _accept_higher_term(self, msg: Message) -> bool:
        """Handle a message from a higher term; False when it must be ignored."""
        if isinstance(msg, VoteRequest):
            heard_leader = (
                self._leader is not None
                and self._election_elapsed < self._config.election_ticks_min
            )
            # With lease reads, a node that just (re)started may have acknowledged a leader's
            # lease before it went down: it must not vote before that lease has run out.
            just_booted = self._config.lease_reads and self._ticks < self._config.election_ticks_min
            in_lease = self._config.check_quorum and (heard_leader or just_booted)
            if in_lease and not msg.transfer:
                logger.debug(
                    "%s: ignoring %s from %s in term %d: a leader was heard recently",
                    self._id,
                    "pre-vote" if msg.pre_vote else "vote",
                    msg.src,
                    msg.term,
                )
                return False
            if msg.pre_vote:
                return True
        if isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
            return True
        leader = msg.src if isinstance(msg, AppendEntries | InstallSnapshot | TimeoutNow) else None
        logger.debug("%s: term %d -> %d (from %s)", self._id, self._term, msg.term, msg.src)
        self._become_follower(msg.term, leader)
        return True

    def _answer_stale(self, msg: Message) -> None:
        """A message from an older term: tell a stale leader or pre-candidate the current term."""
        if isinstance(msg, AppendEntries | InstallSnapshot):
            self._send(AppendResponse(self._id, msg.src, self._term, False, 0))
        elif isinstance(msg, VoteRequest) and msg.pre_vote:
            self._send(VoteResponse(self._id, msg.src, self._term, False, pre_vote=True))
        elif isinstance(msg, ReadIndexRequest):
            self._send(ReadIndexResponse(self._id, msg.src, self._term, msg.ctx, 0, False))

    def _same_term_leader_conflict(self, msg: AppendEntries | InstallSnapshot) -> bool:
        if self._role is Role.LEADER:
            logger.error(
                "%s: %s from %s claims leadership of term %d, which %s leads; dropped",
                self._id,
                type(msg).__name__,
                msg.src,
                msg.term,
                self._id,
            )
            return True
        return False

    # -----------------------------------------------------------------------------------------
    # Roles

    def _draw_election_timeout(self) -> int:
        return self._rng.randrange(self._config.election_ticks_min, self._config.election_ticks_max)

    def _reset_timers(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._draw_election_timeout()

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        if self._role is Role.LEADER:
            logger.info("%s: stepping down in term %d", self._id, term)
        self._role = Role.FOLLOWER
        self._leader = leader
        self._reset_timers()
        self._clear_leader_state()

    def _follow(self, leader: NodeId) -> None:
        """A message from the current term's leader: follow it and restart the election timer."""
        if self._role is Role.FOLLOWER:
            self._leader = leader
            self._election_elapsed = 0
        else:
            self._become_follower(self._term, leader)

    def _clear_leader_state(self) -> None:
        self._progress = {}
        self._votes = {}
        self._pending_reads = []
        self._reads_awaiting_commit = []
        self._lead_transferee = None
        self._lease_start_tick = None
        self._round_sent_tick = {}
        self._replicate_pending = False
        self._commit_broadcast_pending = False

    def _start_election(self, *, transfer: bool) -> None:
        if self._config.pre_vote and not transfer:
            self._role = Role.PRE_CANDIDATE
            self._leader = None
            self._clear_leader_state()
            self._reset_timers()
            self._votes = {self._id: True}
            campaign_term = self._term + 1
            logger.debug("%s: pre-vote for term %d", self._id, campaign_term)
        else:
            self._term += 1
            self._vote = self._id
            self._role = Role.CANDIDATE
            self._leader = None
            self._clear_leader_state()
            self._reset_timers()
            self._votes = {self._id: True}
            campaign_term = self._term
            logger.info("%s: campaigning in term %d", self._id, campaign_term)
        if self._tally_won():
            self._on_vote_won()
            return
        pre_vote = self._role is Role.PRE_CANDIDATE
        for peer in self._peers:
            self._send(
                VoteRequest(
                    self._id,
                    peer,
                    campaign_term,
                    self._log.last_index,
                    self._log.last_term,
                    pre_vote=pre_vote,
                    transfer=transfer,
                )
            )

    def _tally_won(self) -> bool:
        return sum(self._votes.values()) >= self._config.quorum

    def _tally_lost(self) -> bool:
        return sum(not granted for granted in self._votes.values()) >= self._config.quorum

    def _on_vote_won(self) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._start_election(transfer=True)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self._role = Role.LEADER
        self._leader = self._id
        self._reset_timers()
        self._clear_leader_state()
        self._progress = {
            peer: Progress(match=0, next=self._log.last_index + 1) for peer in self._peers
        }
        logger.info("%s: leader of term %d", self._id, self._term)
        self._append_local(b"", EntryKind.NOOP)

    def _handle_vote_request(self, msg: VoteRequest) -> None:
        can_vote = (
            self._vote == msg.src
            or (self._vote is None and self._leader is None)
            or (msg.pre_vote and msg.term > self._term)
        )
        if can_vote and self._log.is_up_to_date(msg.last_log_index, msg.last_log_term):
            self._send(VoteResponse(self._id, msg.src, msg.term, True, pre_vote=msg.pre_vote))
            if not msg.pre_vote:
                self._vote = msg.src
                self._election_elapsed = 0
        else:
            self._send(VoteResponse(self._id, msg.src, self._term, False, pre_vote=msg.pre_vote))

    def _handle_vote_response(self, msg: VoteResponse) -> None:
        if msg.pre_vote:
            if self._role is not Role.PRE_CANDIDATE:
                return
            if msg.granted and msg.term != self._term + 1:
                return
        elif self._role is not Role.CANDIDATE:
            return
        self._votes[msg.src] = msg.granted
        if self._tally_won():
            self._on_vote_won()
        elif self._tally_lost():
            self._become_follower(self._term, None)

    # -----------------------------------------------------------------------------------------
    # Follower side of replication

    def _handle_append(self, msg: AppendEntries) -> None:
        prev_index, prev_term, entries = msg.prev_index, msg.prev_term, msg.entries
        commit = self._log.commit
        if prev_index < commit:
            # Entries up to our commit index are committed, hence identical: skip them.
            skip = commit - prev_index
            if skip >= len(entries):
                self._respond_append(msg, True, commit)
                return
            prev_index, prev_term = commit, entries[skip - 1].term
            entries = entries[skip:]
        if not self._log.matches(prev_index, prev_term):
            if prev_index > self._log.last_index:
                hint_index, hint_term = self._log.last_index, self._log.last_term
            else:
                hint_index, hint_term = self._log.find_conflict_hint(prev_index, prev_term)
            self._send(
                AppendResponse(
                    self._id,
                    msg.src,
                    self._term,
                    False,
                    msg.prev_index,
                    hint_index,
                    hint_term,
                    msg.read_round,
                )
            )
            return
        for position, entry in enumerate(entries):
            existing = self._log.term_at(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                if entry.index <= self._log.commit:  # pragma: no cover - guarded above
                    logger.error("%s: refusing to overwrite committed %d", self._id, entry.index)
                    return
                self._log.truncate_from(entry.index)
            for new_entry in entries[position:]:
                self._log.append(new_entry)
            break
        last_new = prev_index + len(entries)
        self._log.commit = max(self._log.commit, min(msg.commit, last_new))
        self._respond_append(msg, True, last_new)

    def _respond_append(self, msg: AppendEntries, success: bool, index: int) -> None:
        self._send(
            AppendResponse(self._id, msg.src, self._term, success, index, read_round=msg.read_round)
        )

    def _handle_snapshot(self, msg: InstallSnapshot) -> None:
        meta = msg.snapshot.meta
        if meta.index <= self._log.commit:
            index = self._log.commit
        elif self._log.matches(meta.index, meta.term):
            self._log.commit = meta.index
            index = meta.index
        else:
            logger.info(
                "%s: installing snapshot at index %d term %d from %s",
                self._id,
                meta.index,
                meta.term,
                msg.src,
            )
            self._log.install_snapshot(msg.snapshot)
            self._received_snapshot = msg.snapshot
            index = meta.index
        self._send(AppendResponse(self._id, msg.src, self._term, True, index))

    # -----------------------------------------------------------------------------------------
    # Leader side of replication

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._config.election_ticks_min:
            self._election_elapsed = 0
            if self._config.check_quorum and not self._config.unsafe_no_check_quorum:
                active = 1 + sum(p.recent_active for p in self._progress.values())
                for progress in self._progress.values():
                    progress.recent_active = False
                if active < self._config.quorum:
                    logger.warning(
                        "%s: heard from %d of %d voters in an election timeout; stepping down",
                        self._id,
                        active,
                        len(self._config.voters),
                    )
                    self._become_follower(self._term, None)
                    return
            if self._lead_transferee is not None:
                logger.warning(
                    "%s: leadership transfer to %s timed out", self._id, self._lead_transferee
                )
                self._lead_transferee = None
        if self._heartbeat_elapsed >= self._config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _append_local(self, data: bytes, kind: EntryKind) -> int:
        index = self._log.last_index + 1
        self._log.append(Entry(self._term, index, data, kind))
        self._replicate_pending = True
        self._maybe_commit()
        return index

    def _flush(self) -> None:
        """Send what proposals and commit changes since the last Ready call for, batched."""
        if self._role is not Role.LEADER:
            return
        broadcast = self._commit_broadcast_pending and self._config.broadcast_commit
        if self._replicate_pending or broadcast:
            for peer in self._peers:
                sent = self._replicate_to(peer)
                if not sent and broadcast:
                    self._send_commit(peer)
            self._replicate_pending = False
        self._commit_broadcast_pending = False

    def _begin_round(self) -> None:
        self._read_round += 1
        self._round_sent_tick[self._read_round] = self._ticks
        if len(self._round_sent_tick) > MAX_UNACKED_ROUNDS:
            # Only a leader nobody answers gets here (unsafe_no_check_quorum); keep it bounded.
            del self._round_sent_tick[next(iter(self._round_sent_tick))]

    def _broadcast_heartbeat(self) -> None:
        self._begin_round()
        for peer in self._peers:
            self._send_heartbeat(peer)
        self._maybe_release_reads()

    def _send_heartbeat(self, peer: NodeId) -> None:
        progress = self._progress[peer]
        if progress.state is ReplicationState.SNAPSHOT:
            progress.snapshot_ticks += 1
            if progress.snapshot_ticks >= self._config.election_ticks_min:
                self._send_snapshot(peer)
            return
        if progress.state is ReplicationState.PROBE:
            progress.probe_sent = False
        if not self._send_append(peer, allow_empty=True, ignore_pause=True):
            self._send_commit(peer)

    def _send_commit(self, peer: NodeId) -> None:
        """An empty AppendEntries at the follower's match index: always accepted, carries commit."""
        progress = self._progress[peer]
        prev_term = self._log.term_at(progress.match)
        if prev_term is None:
            return
        self._send(
            AppendEntries(
                self._id,
                peer,
                self._term,
                progress.match,
                prev_term,
                (),
                self._log.commit,
                self._read_round,
            )
        )

    def _replicate_to(self, peer: NodeId) -> bool:
        """Send as many appends as the follower's window allows (pipelining); True if any."""
        sent = False
        for _ in range(self._config.max_inflight):
            if not self._send_append(peer):
                break
            sent = True
        return sent

    def _send_append(
        self, peer: NodeId, *, allow_empty: bool = False, ignore_pause: bool = False
    ) -> bool:
        progress = self._progress[peer]
        if progress.state is ReplicationState.SNAPSHOT:
            return False
        if not ignore_pause and progress.paused(self._config.max_inflight):
            return False
        prev_index = progress.next - 1
        prev_term = self._log.term_at(prev_index)
        if prev_term is None:
            self._send_snapshot(peer)
            return True
        high = min(self._log.last_index + 1, progress.next + self._config.max_entries_per_append)
        if progress.state is ReplicationState.REPLICATE and len(progress.inflight) >= (
            self._config.max_inflight
        ):
            high = progress.next  # window full: a heartbeat only
        entries = self._log.slice(progress.next, high)
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.data)
            if size > MAX_APPEND_BYTES and count > 0:
                entries = entries[:count]
                break
        if not entries and not allow_empty:
            return False
        if entries:
            if progress.state is ReplicationState.REPLICATE:
                progress.next = entries[-1].index + 1
                progress.inflight.append(entries[-1].index)
            else:
                progress.probe_sent = True
        elif progress.state is ReplicationState.PROBE:
            progress.probe_sent = True
        self._send(
            AppendEntries(
                self._id,
                peer,
                self._term,
                prev_index,
                prev_term,
                tuple(entries),
                self._log.commit,
                self._read_round,
            )
        )
        return True

    def _send_snapshot(self, peer: NodeId) -> None:
        progress = self._progress[peer]
        snapshot = self._log.snapshot
        if snapshot is None:  # pragma: no cover - term_at only fails below a snapshot
            logger.error("%s: %s needs a snapshot but none exists", self._id, peer)
            return
        progress.state = ReplicationState.SNAPSHOT
        progress.pending_snapshot = snapshot.meta.index
        progress.snapshot_ticks = 0
        progress.inflight.clear()
        self._send(InstallSnapshot(self._id, peer, self._term, snapshot))

    def _handle_append_response(self, msg: AppendResponse) -> None:
        progress = self._progress[msg.src]
        progress.recent_active = True
        if msg.read_round > progress.acked_round:
            progress.acked_round = min(msg.read_round, self._read_round)
            self._maybe_release_reads()
        if self._role is not Role.LEADER:  # a read release never steps down, but be explicit
            return
        if msg.success:
            self._on_append_success(msg.src, progress, msg.index)
        else:
            self._on_append_reject(msg.src, progress, msg)

    def _on_append_success(self, peer: NodeId, progress: Progress, index: int) -> None:
        if index > self._log.last_index:
            logger.warning("%s: %s acked index %d beyond our log; ignored", self._id, peer, index)
            return
        advanced = index > progress.match
        if advanced:
            progress.match = index
        if progress.state is ReplicationState.PROBE:
            progress.become_replicate()
        elif progress.state is ReplicationState.SNAPSHOT:
            if progress.match >= progress.pending_snapshot:
                progress.become_replicate()
        else:
            progress.next = max(progress.next, index + 1)
            while progress.inflight and progress.inflight[0] <= index:
                progress.inflight.popleft()
        if advanced and self._maybe_commit():
            self._commit_broadcast_pending = True
        if self._lead_transferee == peer and progress.match == self._log.last_index:
            logger.info("%s: %s is up to date, sending TimeoutNow", self._id, peer)
            self._send(TimeoutNow(self._id, peer, self._term))
        self._replicate_to(peer)

    def _on_append_reject(self, peer: NodeId, progress: Progress, msg: AppendResponse) -> None:
        if progress.state is ReplicationState.SNAPSHOT:
            return
        if progress.state is ReplicationState.REPLICATE:
            if msg.index <= progress.match:
                return  # stale
        elif msg.index != progress.next - 1:
            return  # answer to an older probe
        if msg.hint_index < self._log.snapshot_index:
            conflict = msg.hint_index
        else:
            conflict, _ = self._log.find_conflict_hint(msg.hint_index, msg.hint_term)
        next_index = max(min(msg.index, conflict + 1), progress.match + 1)
        logger.debug("%s: %s rejected %d, probing at %d", self._id, peer, msg.index, next_index)
        progress.become_probe(next_index)
        self._send_append(peer, allow_empty=True)

    def _maybe_commit(self) -> bool:
        """Advance the commit index to the majority match, counting only current-term entries
        (Raft Figure 8: an older-term entry is committed only by a current-term one after it).
        The leader's own match is what it has made durable, not what it has appended."""
        matches = sorted(
            [self._log.stable_index, *(p.match for p in self._progress.values())], reverse=True
        )
        candidate = matches[self._config.quorum - 1]
        if candidate > self._log.commit and self._log.term_at(candidate) == self._term:
            self._log.commit = candidate
            self._release_reads_awaiting_commit()
            return True
        return False

    # -----------------------------------------------------------------------------------------
    # ReadIndex

    def _lease_valid(self) -> bool:
        if self._config.unsafe_no_check_quorum:
            return True
        if not self._config.lease_reads or self._lease_start_tick is None:
            return False
        if self._lead_transferee is not None:
            return False  # the transferee may win an election inside our lease
        # One tick of margin for clock-rate differences between the nodes.
        return self._ticks < self._lease_start_tick + self._config.election_ticks_min - 1

    def _leader_read(self, ctx: bytes, requester: NodeId) -> None:
        if self._log.term_at(self._log.commit) != self._term:
            # Until an entry of this term commits, our commit index may lag the real one.
            self._reads_awaiting_commit.append((ctx, requester))
            return
        if self._config.quorum == 1 or self._lease_valid():
            self._deliver_read(ctx, self._log.commit, requester)
            return
        self._begin_round()
        self._pending_reads.append(_PendingRead(ctx, self._log.commit, self._read_round, requester))
        for peer in self._peers:
            self._send_heartbeat(peer)

    def _release_reads_awaiting_commit(self) -> None:
        if self._reads_awaiting_commit and self._log.term_at(self._log.commit) == self._term:
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for ctx, requester in waiting:
                self._leader_read(ctx, requester)

    def _maybe_release_reads(self) -> None:
        """Release reads whose heartbeat round a majority has acknowledged."""
        rounds = sorted(
            [self._read_round, *(p.acked_round for p in self._progress.values())], reverse=True
        )
        quorum_round = rounds[self._config.quorum - 1]
        if quorum_round <= self._quorum_round:
            return
        self._quorum_round = quorum_round
        sent_tick = self._round_sent_tick.get(quorum_round)
        if sent_tick is not None:
            self._lease_start_tick = sent_tick
        for old_round in [r for r in self._round_sent_tick if r < quorum_round]:
            del self._round_sent_tick[old_round]
        still_pending = []
        for read in self._pending_reads:
            if read.round <= quorum_round:
                self._deliver_read(read.ctx, read.index, read.requester)
            else:
                still_pending.append(read)
        self._pending_reads = still_pending

    def _deliver_read(self, ctx: bytes, index: int, requester: NodeId) -> None:
        if requester == self._id:
            self._read_states.append(ReadState(ctx, index))
        else:
            self._send(ReadIndexResponse(self._id, requester, self._term, ctx, index, True))

    # -----------------------------------------------------------------------------------------

    def _current_hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self._log.commit)

    def _send(self, msg: Message) -> None:
        self._messages.append(msg)
