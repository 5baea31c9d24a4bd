"""Writer process for the kill -9 torture test: appends batches to a RaftStorage forever and
prints a line after each save returns (i.e. is durable). Run: python this_file DIR SEED.

Every entry's data is derived from its (index, term), so a reader can tell a corrupt entry from
a good one. Lines: ``begin FIRST TERM COUNT`` before a save, ``ack FIRST TERM COUNT`` after it,
``snap INDEX TERM`` after a snapshot is durable, ``hs TERM COMMIT`` for a durable hard state.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from reference_impl.raft.types import Entry, HardState, Snapshot, SnapshotMeta
from reference_impl.storage.raft_storage import RaftStorage


def entry_data(index: int, term: int) -> bytes:
    digest = hashlib.sha256(f"{index}:{term}".encode()).digest()
    return f"{index}:{term}:".encode() + digest * (1 + index % 5)


def snapshot_data(index: int, term: int) -> bytes:
    return f"snapshot:{index}:{term}".encode()


def main() -> None:
    directory, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    storage = RaftStorage(directory)
    restored = storage.load()
    base = restored.snapshot.meta.index if restored.snapshot else 0
    last_index = restored.entries[-1].index if restored.entries else base
    term = max(
        [restored.hard_state.term, 1]
        + [e.term for e in restored.entries[-1:]]
        + ([restored.snapshot.meta.term] if restored.snapshot else [])
    )
    out = sys.stdout
    print("ready", flush=True)
    while True:
        roll = rng.random()
        if roll < 0.05 and last_index > base + 3:
            term += 1  # a new leader overwrites the last few entries
            first = last_index - rng.randint(0, 3)
        else:
            first = last_index + 1
        count = rng.randint(1, 40)
        entries = [Entry(term, i, entry_data(i, term)) for i in range(first, first + count)]
        hard_state = HardState(term, "n1", max(base, first - 1)) if rng.random() < 0.3 else None
        out.write(f"begin {first} {term} {count}\n")
        out.flush()
        storage.save(hard_state, entries)
        last_index = first + count - 1
        out.write(f"ack {first} {term} {count}\n")
        if hard_state is not None:
            out.write(f"hs {hard_state.term} {hard_state.commit}\n")
        out.flush()
        if rng.random() < 0.04 and last_index - base > 10:
            index = last_index - rng.randint(0, 5)
            snapshot_term = term if index >= first else None
            if snapshot_term is None:
                continue  # only snapshot inside the batch just written: its term is known
            storage.save(
                None,
                (),
                Snapshot(SnapshotMeta(index, term, ("n1",)), snapshot_data(index, term)),
            )
            base = index
            out.write(f"snap {index} {term}\n")
            out.flush()


if __name__ == "__main__":
    main()
