"""Values that flow in and out of the Raft core: log entries, persistent state, messages, Ready.

Every value is a frozen dataclass so that the core, the storage, the codec and the simulation can
pass them around and keep them without defensive copies.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

NodeId: TypeAlias = str


class EntryKind(enum.IntEnum):
    """What an entry carries. NOOP is the empty entry a new leader appends to commit its term."""

    NORMAL = 0
    NOOP = 1


class Role(enum.Enum):
    """The role a node plays in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry; ``index`` starts at 1, ``term`` is the term of the leader that created it."""

    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent (Raft Figure 2)."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where an application snapshot sits in the log and the voters it was taken under."""

    index: int
    term: int
    voters: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An application snapshot: the state machine's bytes after applying up to meta.index."""

    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadState:
    """Answer to ``read_index(ctx)``: the read is linearizable once ``index`` has been applied."""

    ctx: bytes
    index: int


@dataclass(frozen=True, slots=True)
class RestoredState:
    """What storage hands the core at start: durable state, newest snapshot, log after it."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[Entry, ...]


# ---------------------------------------------------------------------------------------------
# Messages. Every message names its sender, its receiver and the sender's term.


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """RequestVote. ``pre_vote`` asks "would you vote for me?" without bumping anyone's term;
    ``transfer`` marks a campaign started by TimeoutNow, which may ignore the leader lease."""

    src: NodeId
    dst: NodeId
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    """Answer to VoteRequest; a granted pre-vote carries the term the candidate asked for."""

    src: NodeId
    dst: NodeId
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """AppendEntries; with no entries it is a heartbeat. ``read_round`` is echoed in the response
    and lets the leader confirm it still leads a majority for ReadIndex."""

    src: NodeId
    dst: NodeId
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_round: int = 0


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Answer to AppendEntries or InstallSnapshot.

    On success ``index`` is the last index the follower now holds that matches the leader. On
    rejection ``index`` is the rejected ``prev_index`` and (``hint_index``, ``hint_term``) is the
    follower's last entry at or below it whose term is at most ``prev_term``: the leader skips a
    whole conflicting term per round trip instead of one entry (fast back-tracking).
    """

    src: NodeId
    dst: NodeId
    term: int
    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0
    read_round: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The leader's snapshot, for a follower whose next entry was compacted away."""

    src: NodeId
    dst: NodeId
    term: int
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: "start an election now", sent once the target's log is up to date."""

    src: NodeId
    dst: NodeId
    term: int


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader for a read index on behalf of its client (follower reads)."""

    src: NodeId
    dst: NodeId
    term: int
    ctx: bytes


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    """The leader's answer; ``success`` is false when it cannot confirm its leadership now."""

    src: NodeId
    dst: NodeId
    term: int
    ctx: bytes
    index: int
    success: bool


Message: TypeAlias = (
    VoteRequest
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | InstallSnapshot
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

MESSAGE_TYPES: tuple[type, ...] = (
    VoteRequest,
    VoteResponse,
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
)


@dataclass(frozen=True, slots=True)
class Ready:
    """What the caller must do next, in this order: persist ``snapshot``, ``hard_state`` and
    ``entries`` (one fsync), send ``messages``, install ``snapshot`` into the state machine, apply
    ``committed`` in order, hand out ``read_states`` once applied, then call ``advance(ready)``.

    ``hard_state`` is None when unchanged since the last Ready; ``snapshot`` is only set when a
    snapshot arrived from the leader (the caller's own snapshots come back from ``compact``).
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    role: Role
    leader: NodeId | None
    term: int
