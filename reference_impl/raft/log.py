"""The in-memory Raft log: the entries after the latest snapshot, plus bookkeeping of what is
already durable (``stable_index``), handed to storage (``persisting_index``), committed and applied.

Kept apart from the core so the log's index arithmetic (the usual source of off-by-one bugs)
lives in one small place with one representation: ``entries[i]`` has index
``snapshot_index + 1 + i``.
"""

from __future__ import annotations

from reference_impl.raft.types import Entry, Snapshot


class RaftLog:
    """Entries after the snapshot; indexes below ``first_index`` exist only in the snapshot."""

    def __init__(self, snapshot: Snapshot | None, entries: tuple[Entry, ...]) -> None:
        self.snapshot = snapshot
        self.snapshot_index = snapshot.meta.index if snapshot else 0
        self.snapshot_term = snapshot.meta.term if snapshot else 0
        self.entries: list[Entry] = [e for e in entries if e.index > self.snapshot_index]
        expected = self.snapshot_index + 1
        for entry in self.entries:
            if entry.index != expected:
                raise ValueError(f"restored log has a gap: expected index {expected}, got {entry}")
            expected += 1
        self.stable_index = self.last_index  # everything restored is durable
        # Entries up to here were handed out in a Ready (durable or being written): a leader
        # with asynchronous writes gets the next entries before the previous write finished.
        self.persisting_index = self.last_index
        self.commit = self.snapshot_index
        self.applied = self.snapshot_index

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, low: int, high: int) -> list[Entry]:
        """Entries with low <= index < high (both within the retained log)."""
        offset = self.snapshot_index + 1
        return self.entries[low - offset : high - offset]

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's vote restriction (section 5.4.1): is a log ending (term, index) at least ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"append out of order: last index {self.last_index}, got {entry}")
        self.entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop entries at ``index`` and after (never below the commit index: callers check)."""
        del self.entries[index - self.snapshot_index - 1 :]
        self.stable_index = min(self.stable_index, index - 1)
        self.persisting_index = min(self.persisting_index, index - 1)

    def find_conflict_hint(self, index: int, term: int) -> tuple[int, int]:
        """Largest index <= ``index`` whose term is <= ``term``, and that term (fast backtracking).

        Used by both sides: the follower to build its rejection hint, the leader to turn the
        follower's hint into its next probe.
        """
        index = min(index, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.entry(index).term
            if entry_term <= term:
                return index, entry_term
            index -= 1
        return self.snapshot_index, self.snapshot_term

    def unstable_entries(self) -> tuple[Entry, ...]:
        """Entries not yet handed to storage."""
        return tuple(self.slice(self.persisting_index + 1, self.last_index + 1))

    def persisting_to(self, index: int) -> None:
        self.persisting_index = max(self.persisting_index, index)

    def stable_to(self, index: int, term: int) -> None:
        """Mark entries up to (index, term) durable, unless they were replaced since."""
        if index > self.stable_index and self.term_at(index) == term:
            self.stable_index = index

    def committed_to_apply(self) -> tuple[Entry, ...]:
        """Committed entries not applied yet (the caller persists a Ready before applying it)."""
        high = self.commit
        if high <= self.applied:
            return ()
        return tuple(self.slice(self.applied + 1, high + 1))

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (a follower catching up)."""
        self.snapshot = snapshot
        self.snapshot_index = snapshot.meta.index
        self.snapshot_term = snapshot.meta.term
        self.entries = []
        self.stable_index = self.snapshot_index
        self.persisting_index = self.snapshot_index
        self.commit = max(self.commit, self.snapshot_index)
        self.applied = self.snapshot_index

    def compact(self, snapshot: Snapshot) -> None:
        """Forget entries covered by the caller's own snapshot (index <= applied)."""
        index = snapshot.meta.index
        del self.entries[: index - self.snapshot_index]
        self.snapshot = snapshot
        self.snapshot_index = index
        self.snapshot_term = snapshot.meta.term
