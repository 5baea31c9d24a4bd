"""The WAL's zero-filled tail: zeros are kept ahead of the records, the zeros read back as the
clean end of the log, a write torn into them is cut off (stale bytes never line up behind later
records), batches that outrun the filler are intact, and a filler that cannot write is logged
while the WAL keeps working."""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path

import pytest

from reference_impl.raft.codec import encode_entry
from reference_impl.raft.types import Entry, HardState, Snapshot, SnapshotMeta
from reference_impl.storage import zeroed_tail
from reference_impl.storage.raft_storage import WAL_FILE, RaftStorage
from reference_impl.storage.wal import RecordKind, encode_record
from tests.support.waiting import wait_until


def _entries(first: int, last: int, term: int = 1, size: int = 0) -> list[Entry]:
    return [
        Entry(term, i, f"cmd-{term}-{i}".encode() + b"x" * size) for i in range(first, last + 1)
    ]


def _wait_for_zeros(storage: RaftStorage, path: Path, at_least: int) -> None:
    wait_until(
        lambda: path.stat().st_size >= storage.wal_end + at_least,
        timeout=10.0,
        what="the filler zero-filling ahead of the WAL",
    )


def test_zeros_are_kept_ahead_of_the_records_and_read_back_as_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RaftStorage(tmp_path, zeroed_tail_bytes=1 << 20)
    storage.load()
    storage.save(HardState(1, "n1", 2), _entries(1, 20))
    wal = tmp_path / WAL_FILE
    _wait_for_zeros(storage, wal, 1 << 19)
    end = storage.wal_end
    storage.close()
    raw = wal.read_bytes()
    assert len(raw) > end, "zeros follow the records"
    assert not any(raw[end:]), "zeros follow the records"
    with caplog.at_level(logging.WARNING):
        restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(1, 20)
    assert restored.hard_state == HardState(1, "n1", 2)
    assert caplog.text == "", "a zero tail is the clean end, not damage"


def test_a_write_torn_into_the_zeros_is_cut_and_never_lines_up_behind_later_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RaftStorage(tmp_path)
    storage.load()
    storage.save(HardState(1, None, 2), _entries(1, 2))
    end = storage.wal_end
    storage.close()
    # A batch of entries 3 and 4 whose first page never reached the disk, its second did.
    next_record = encode_record(RecordKind.ENTRY, encode_entry(_entries(3, 3)[0]))
    stale = encode_record(RecordKind.ENTRY, encode_entry(Entry(1, 4, b"never acknowledged")))
    with open(tmp_path / WAL_FILE, "r+b") as handle:
        handle.seek(end + len(next_record))
        handle.write(stale)
    with caplog.at_level(logging.WARNING):
        again = RaftStorage(tmp_path)
        restored = again.load()
    assert list(restored.entries) == _entries(1, 2)
    assert "non-zero bytes after a zero record header" in caplog.text
    again.save(None, _entries(3, 3))  # ends exactly where the stale record started
    assert again.wal_end == end + len(next_record)
    again.close()
    assert list(RaftStorage(tmp_path).load().entries) == _entries(1, 3)


def test_batches_that_outrun_the_filler_are_intact(tmp_path: Path) -> None:
    rng = random.Random(7)
    storage = RaftStorage(tmp_path, zeroed_tail_bytes=8192)
    storage.load()
    index = 0
    for _ in range(300):
        count = rng.randint(1, 20)
        storage.save(
            HardState(1, None, index),
            _entries(index + 1, index + count, size=rng.randint(0, 2000)),
        )
        index += count
        if rng.random() < 0.05:
            storage.close()
            storage = RaftStorage(tmp_path, zeroed_tail_bytes=8192)
            assert [e.index for e in storage.load().entries] == list(range(1, index + 1))
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert [e.index for e in restored.entries] == list(range(1, index + 1))
    assert all(e.data.startswith(f"cmd-1-{e.index}".encode()) for e in restored.entries)


def test_a_compacted_wal_gets_zeros_ahead_again(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, zeroed_tail_bytes=1 << 16)
    storage.load()
    storage.save(HardState(1, None, 10), _entries(1, 10))
    storage.save(None, (), Snapshot(SnapshotMeta(8, 1, ("n1",)), b"state-at-8"))
    wal = tmp_path / WAL_FILE
    _wait_for_zeros(storage, wal, 1 << 15)
    storage.save(HardState(1, None, 12), _entries(11, 12))
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(9, 12)
    assert restored.hard_state.commit == 12


def test_a_filler_that_cannot_write_is_logged_and_the_wal_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = os.pwrite

    def full_disk_for_zeros(fd: int, data: bytes, offset: int) -> int:
        if len(data) and not any(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_disk_for_zeros)
    with caplog.at_level(logging.WARNING):
        storage = RaftStorage(tmp_path)
        storage.load()
        wait_until(
            lambda: "could not zero-fill" in caplog.text,
            timeout=10.0,
            what="the filler's failure in the log",
        )
        storage.save(HardState(1, None, 3), _entries(1, 3))
        storage.close()
    assert "No space left on device" in caplog.text
    assert list(RaftStorage(tmp_path).load().entries) == _entries(1, 3)


def test_the_tail_refuses_a_low_water_mark_above_its_target() -> None:
    with pytest.raises(ValueError, match="low <= target"):
        zeroed_tail.ZeroedTail("wal", target=10, low=20)
