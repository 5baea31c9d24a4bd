"""RaftStorage: what was saved comes back; a torn or corrupt WAL tail is cut off (and logged),
never applied; snapshots replace files atomically and compact the log."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from reference_impl.raft.errors import StorageCorruption
from reference_impl.raft.types import Entry, HardState, Snapshot, SnapshotMeta
from reference_impl.storage.raft_storage import SNAPSHOT_FILE, WAL_FILE, RaftStorage
from reference_impl.storage.wal import WAL_MAGIC


def _entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, f"cmd-{term}-{i}".encode()) for i in range(first, last + 1)]


def _reopen(directory: Path) -> RaftStorage:
    storage = RaftStorage(directory)
    storage.load()
    return storage


def test_saved_entries_and_hard_state_come_back_after_reopening(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, "n1", 0), _entries(1, 3))
    stats = storage.save(HardState(2, "n2", 3), _entries(4, 6, term=2))
    assert stats.records == 4
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert restored.hard_state == HardState(2, "n2", 3)
    assert list(restored.entries) == _entries(1, 3) + _entries(4, 6, term=2)
    assert restored.snapshot is None


def test_conflicting_entries_truncate_the_stored_suffix(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 0), _entries(1, 10))
    storage.save(HardState(2, None, 4), _entries(5, 6, term=2))
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(1, 4) + _entries(5, 6, term=2)


@pytest.mark.parametrize("cut", [1, 5, 9, 17])
def test_a_torn_tail_is_truncated_and_logged_not_applied(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 2), _entries(1, 2))
    storage.save(None, _entries(3, 3))
    end = storage.wal_end
    storage.close()
    wal = tmp_path / WAL_FILE
    os.truncate(wal, end - cut)
    with caplog.at_level(logging.WARNING):
        restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(1, 2)
    assert restored.hard_state == HardState(1, None, 2)
    assert "torn" in caplog.text
    again = _reopen(tmp_path)
    again.save(None, _entries(3, 4))
    again.close()
    assert list(RaftStorage(tmp_path).load().entries) == _entries(1, 4)


def test_a_corrupt_record_is_detected_by_its_crc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 0), _entries(1, 2))
    storage.save(None, _entries(3, 3))
    end = storage.wal_end
    storage.close()
    wal = tmp_path / WAL_FILE
    raw = bytearray(wal.read_bytes())
    raw[end - 3] ^= 0xFF  # inside the payload of the last record
    wal.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(1, 2)
    assert "CRC mismatch" in caplog.text


def test_garbage_after_the_last_record_is_truncated(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 1), _entries(1, 1))
    end = storage.wal_end
    storage.close()
    os.truncate(tmp_path / WAL_FILE, end)
    with open(tmp_path / WAL_FILE, "ab") as handle:
        handle.write(b"\x00\x00\x00\x05" + b"\xff" * 3)
    restored = RaftStorage(tmp_path).load()
    assert list(restored.entries) == _entries(1, 1)


def test_a_foreign_file_is_refused_rather_than_repaired(tmp_path: Path) -> None:
    (tmp_path / WAL_FILE).write_bytes(b"this is not a wal at all")
    with pytest.raises(StorageCorruption, match="does not start with"):
        RaftStorage(tmp_path).load()


def test_a_torn_header_of_a_brand_new_wal_starts_it_again(tmp_path: Path) -> None:
    (tmp_path / WAL_FILE).write_bytes(WAL_MAGIC[:3])
    restored = RaftStorage(tmp_path).load()
    assert restored.entries == ()
    assert restored.hard_state == HardState()


def test_a_snapshot_compacts_the_log_and_keeps_later_entries(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 8), _entries(1, 10))
    snapshot = Snapshot(SnapshotMeta(8, 1, ("n1", "n2", "n3")), b"state@8")
    storage.save(None, (), snapshot)
    storage.save(HardState(1, None, 11), _entries(11, 11))
    records_end = storage.wal_end
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert restored.snapshot == snapshot
    assert list(restored.entries) == _entries(9, 11)
    assert restored.hard_state.commit == 11
    assert records_end < 200, "entries covered by the snapshot are gone from the WAL"


def test_a_received_snapshot_that_does_not_match_replaces_the_log(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 2), _entries(1, 5))
    received = Snapshot(SnapshotMeta(20, 3, ("n1", "n2", "n3")), b"leader-state")
    storage.save(HardState(3, None, 20), (), received)
    storage.close()
    restored = RaftStorage(tmp_path).load()
    assert restored.snapshot == received
    assert restored.entries == ()
    assert restored.hard_state == HardState(3, None, 20)


def test_a_corrupt_snapshot_file_is_an_error_not_a_silent_reset(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 1), _entries(1, 1))
    storage.save(None, (), Snapshot(SnapshotMeta(1, 1, ("n1",)), b"abc"))
    storage.close()
    path = tmp_path / SNAPSHOT_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageCorruption, match="CRC"):
        RaftStorage(tmp_path).load()


def test_leftover_temporary_files_from_a_crash_are_ignored(tmp_path: Path) -> None:
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 1), _entries(1, 1))
    storage.close()
    (tmp_path / (SNAPSHOT_FILE + ".tmp")).write_bytes(b"half written")
    restored = RaftStorage(tmp_path).load()
    assert restored.snapshot is None
    assert not (tmp_path / (SNAPSHOT_FILE + ".tmp")).exists()


def test_one_save_is_one_fsync_whatever_the_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.fdatasync
    caller = threading.get_ident()

    def counting(fd: int) -> None:
        if threading.get_ident() == caller:  # not the zero-filling thread
            calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    storage = _reopen(tmp_path)
    storage.save(HardState(1, None, 0), _entries(1, 500))
    assert len(calls) == 1
    storage.close()


def test_without_fsync_nothing_is_synced_and_a_warning_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", calls.append)
    with caplog.at_level(logging.WARNING):
        storage = RaftStorage(tmp_path, fsync=False)
    storage.load()
    storage.save(HardState(1, None, 0), _entries(1, 5))
    storage.close()
    assert calls == []
    assert "UNSAFE" in caplog.text
    assert len(RaftStorage(tmp_path).load().entries) == 5
