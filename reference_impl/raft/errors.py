"""Errors of the Raft layer. Each names what happened and what the caller can do about it."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error raised by reference_impl.raft and the replica shell."""


class RaftConfigError(RaftError, ValueError):
    """A RaftConfig (or replica setting) that cannot work; the message names the field."""


class NotLeader(RaftError):
    """This node cannot take the request; retry on ``leader`` (None when no leader is known)."""

    def __init__(self, leader: str | None, node: str | None = None) -> None:
        where = f"{node} is not the leader" if node else "not the leader"
        hint = f"; the leader is {leader}" if leader else "; no leader is known yet, retry later"
        super().__init__(where + hint)
        self.leader = leader


class ProposalDropped(RaftError):
    """The proposal was not (or may not have been) committed: leadership changed or a transfer is
    in progress. Indeterminate unless the message says the entry was overwritten."""


class ProposalTimeout(RaftError):
    """The proposal did not apply within the timeout; it may still commit later (indeterminate)."""


class ReadIndexTimeout(RaftError):
    """A linearizable read could not be confirmed within the timeout; retry, maybe elsewhere."""


class ProposalTooLarge(RaftError, ValueError):
    """A proposal larger than codec.MAX_ENTRY_BYTES; split the command."""


class RaftProtocolError(RaftError):
    """Bytes from a peer that do not decode into a valid message; the connection is dropped."""


class StorageCorruption(RaftError):
    """Durable state that cannot be trusted beyond repair (not a torn tail, which is truncated)."""
