"""Raft tuning, validated when built so a bad value fails at start with a message, not mid-run."""

from __future__ import annotations

from dataclasses import dataclass

from reference_impl.raft.errors import RaftConfigError
from reference_impl.raft.limits import MAX_ENTRIES_PER_MESSAGE
from reference_impl.raft.types import NodeId


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """One node's Raft settings. Times are in ticks; the server ticks every 50 ms, so the defaults
    give a 50 ms heartbeat and an election timeout drawn from 300-600 ms (sub-second failover on a
    LAN).

    ``lease_reads`` answers reads on the leader without a heartbeat round, trusting that no other
    leader can be elected within ``election_ticks_min`` ticks of the last majority contact; it
    assumes the nodes' clocks advance at the same rate (bounded drift), and needs check_quorum.

    ``broadcast_commit``: when the commit index moves, tell every follower at once with an empty
    AppendEntries. Off (the default), followers learn it from the next append or heartbeat (at
    most ``heartbeat_ticks`` later): under load that halves the messages each follower handles,
    and reads on followers lose nothing (a ReadIndex round's heartbeats carry the commit index).

    ``unsafe_no_check_quorum`` exists only for the bench's self-validation: the leader never steps
    down for lack of a quorum and answers reads from its own state, so a deposed leader keeps
    serving stale reads.
    """

    node_id: NodeId
    voters: tuple[NodeId, ...]
    heartbeat_ticks: int = 1
    election_ticks_min: int = 6
    election_ticks_max: int = 12
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 256
    max_inflight: int = 16
    lease_reads: bool = False
    broadcast_commit: bool = False
    unsafe_no_check_quorum: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.voters, tuple):
            object.__setattr__(self, "voters", tuple(self.voters))
        if not self.node_id:
            raise RaftConfigError("node_id must be a non-empty string such as 'n1'")
        if len(set(self.voters)) != len(self.voters):
            raise RaftConfigError(f"voters contain duplicates: {list(self.voters)}")
        if self.node_id not in self.voters:
            raise RaftConfigError(
                f"node_id {self.node_id!r} is not among the voters {list(self.voters)}"
            )
        if self.heartbeat_ticks < 1:
            raise RaftConfigError(f"heartbeat_ticks must be >= 1, got {self.heartbeat_ticks}")
        if self.election_ticks_min <= self.heartbeat_ticks:
            raise RaftConfigError(
                f"election_ticks_min ({self.election_ticks_min}) must exceed heartbeat_ticks "
                f"({self.heartbeat_ticks}), or followers time out between heartbeats"
            )
        if self.election_ticks_max <= self.election_ticks_min:
            raise RaftConfigError(
                f"election_ticks_max ({self.election_ticks_max}) must exceed election_ticks_min "
                f"({self.election_ticks_min}) so election timeouts are randomised"
            )
        if not 1 <= self.max_entries_per_append <= MAX_ENTRIES_PER_MESSAGE:
            raise RaftConfigError(
                f"max_entries_per_append must be in 1..{MAX_ENTRIES_PER_MESSAGE} "
                f"(MAX_ENTRIES_PER_MESSAGE), got {self.max_entries_per_append}"
            )
        if self.max_inflight < 1:
            raise RaftConfigError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.lease_reads and not self.check_quorum:
            raise RaftConfigError(
                "lease_reads needs check_quorum=True: without it a deposed leader keeps its lease"
            )

    @property
    def quorum(self) -> int:
        """Smallest majority of the voters."""
        return len(self.voters) // 2 + 1
