"""Durable Raft state in one directory: a write-ahead log and an atomically replaced snapshot.

- ``wal.log``: records (length + CRC32) of entries and hard states, appended in batches with one
  fsync per batch (group commit). Within a batch entries come before the hard state, so a hard
  state on disk never refers to entries that are not (its commit index is covered). The records
  are written into zeros a background thread keeps ahead of them (zeroed_tail.py), so a batch's
  fdatasync changes no file metadata.
- ``snapshot.bin``: the newest snapshot, replaced atomically (write a temporary file, fsync,
  rename, fsync the directory). Taking a snapshot also rewrites the WAL without the entries it
  covers (log compaction), the same way.

On load a torn or corrupt tail of the WAL is detected by its length/CRC, logged and truncated,
never applied. That is the only repair: a bad snapshot or a foreign WAL raises StorageCorruption.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reference_impl.raft.codec import (
    decode_entry,
    decode_hard_state,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
)
from reference_impl.raft.errors import RaftProtocolError, StorageCorruption
from reference_impl.raft.types import Entry, HardState, RestoredState, Snapshot
from reference_impl.storage.wal import WAL_MAGIC, RecordKind, encode_record, scan_records
from reference_impl.storage.zeroed_tail import ZeroedTail

logger = logging.getLogger(__name__)

WAL_FILE = "wal.log"
SNAPSHOT_FILE = "snapshot.bin"
SNAPSHOT_MAGIC = b"LBSNP\x00\x01\n"
_CRC = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SaveStats:
    """What one ``save`` wrote: records, bytes, and how long its fsync took (0 if none)."""

    records: int
    bytes_written: int
    fsync_seconds: float


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """Encoded WAL records ready to append (``RaftStorage.prepare``)."""

    data: bytes
    records: int


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (os.write may write less; EINTR is retried by Python itself)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class RaftStorage:
    """The durable state of one Raft node. Not thread-safe: one caller at a time."""

    def __init__(
        self, directory: Path, *, fsync: bool = True, zeroed_tail_bytes: int = 4 << 20
    ) -> None:
        self._directory = Path(directory)
        self._fsync = fsync
        self._wal_path = self._directory / WAL_FILE
        self._snapshot_path = self._directory / SNAPSHOT_FILE
        self._fd: int | None = None
        self._end = 0  # where the next WAL record goes (zeros may follow it)
        self._tail = ZeroedTail(
            str(self._directory),
            target=zeroed_tail_bytes,
            low=zeroed_tail_bytes // 4,
            sync=fsync,
        )
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []
        if not fsync:
            logger.warning(
                "UNSAFE: storage in %s does not fsync; acknowledged writes can be lost on a "
                "crash. Use only to validate the bench (--unsafe-no-fsync).",
                self._directory,
            )

    @property
    def directory(self) -> Path:
        return self._directory

    # -----------------------------------------------------------------------------------------

    def load(self) -> RestoredState:
        """Read the directory (creating it if needed), repair a torn WAL tail, open for append."""
        self._directory.mkdir(parents=True, exist_ok=True)
        for leftover in self._directory.glob("*.tmp"):
            leftover.unlink()
        self._snapshot = self._load_snapshot()
        self._hard_state, self._entries, self._end = self._load_wal()
        self._fd = os.open(self._wal_path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._tail.attach(self._fd, self._end, os.fstat(self._fd).st_size)
        return RestoredState(self._hard_state, self._snapshot, tuple(self._entries))

    @property
    def wal_end(self) -> int:
        """Where the WAL's records end (the file may be longer: zeros follow)."""
        return self._end

    def close(self) -> None:
        self._tail.stop()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> SaveStats:
        """Make ``snapshot``, ``entries`` and ``hard_state`` durable (a Ready's worth).

        Entries replace any stored entries at the same or higher index (a conflicting suffix is
        truncated). Without a snapshot this is one append and one fsync; with one, the snapshot
        file and a compacted WAL are each written atomically. ``sync=False`` skips the fsync; it
        is safe only when nothing but the commit index changed (as in etcd's MustSync): a lost
        commit index is recomputed from the leader.
        """
        if self._fd is None:
            raise RuntimeError("RaftStorage.save called before load()")
        if snapshot is not None:
            return self._save_with_snapshot(hard_state, entries, snapshot)
        return self.write_prepared(self.prepare(hard_state, entries), sync=sync)

    def prepare(self, hard_state: HardState | None, entries: Sequence[Entry]) -> PreparedWrite:
        """The CPU half of ``save`` (encode the records, update the in-memory mirror), so a
        caller can run it on its own thread and hand only the I/O (``write_prepared``) to a
        writer thread, in the same order as it prepared them."""
        if self._fd is None:
            raise RuntimeError("RaftStorage.prepare called before load()")
        if not entries and hard_state is None:
            return PreparedWrite(b"", 0)
        self._apply_to_mirror(hard_state, entries)
        return PreparedWrite(
            self._encode_batch(hard_state, entries), len(entries) + (hard_state is not None)
        )

    def write_prepared(self, prepared: PreparedWrite, *, sync: bool = True) -> SaveStats:
        """The I/O half: append the records and (with ``sync``) fdatasync them."""
        if self._fd is None:
            raise RuntimeError("RaftStorage.write_prepared called before load()")
        if not prepared.records:
            return SaveStats(0, 0, 0.0)
        self._tail.write(self._fd, prepared.data, self._end)
        self._end += len(prepared.data)
        fsync_seconds = self._sync(self._fd) if sync else 0.0
        return SaveStats(prepared.records, len(prepared.data), fsync_seconds)

    # -----------------------------------------------------------------------------------------

    def _sync(self, fd: int) -> float:
        if not self._fsync:
            return 0.0
        started = time.perf_counter()
        os.fdatasync(fd)
        return time.perf_counter() - started

    @staticmethod
    def _encode_batch(hard_state: HardState | None, entries: Sequence[Entry]) -> bytes:
        parts = [encode_record(RecordKind.ENTRY, encode_entry(entry)) for entry in entries]
        if hard_state is not None:
            parts.append(encode_record(RecordKind.HARD_STATE, encode_hard_state(hard_state)))
        return b"".join(parts)

    def _apply_to_mirror(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if hard_state is not None:
            self._hard_state = hard_state
        base = self._snapshot.meta.index if self._snapshot else 0
        for entry in entries:
            if entry.index <= base:
                continue
            del self._entries[entry.index - base - 1 :]
            if entry.index != base + len(self._entries) + 1:
                raise ValueError(
                    f"entry {entry.index} would leave a gap after index {base + len(self._entries)}"
                )
            self._entries.append(entry)

    def _save_with_snapshot(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot
    ) -> SaveStats:
        index, term = snapshot.meta.index, snapshot.meta.term
        base = self._snapshot.meta.index if self._snapshot else 0
        if index <= base:
            return self.save(hard_state, entries)
        keeps_log = (
            index - base <= len(self._entries) and self._entries[index - base - 1].term == term
        )
        # Our own compaction keeps the entries after the snapshot; a snapshot received from the
        # leader that does not match our log replaces the log.
        self._entries = self._entries[index - base :] if keeps_log else []
        payload = encode_snapshot(snapshot)
        started = time.perf_counter()
        self._replace_file(
            self._snapshot_path, SNAPSHOT_MAGIC + _CRC.pack(zlib.crc32(payload)) + payload
        )
        self._snapshot = snapshot
        self._apply_to_mirror(hard_state, entries)
        wal = WAL_MAGIC + self._encode_batch(self._hard_state, self._entries)
        self._tail.detach()
        self._replace_file(self._wal_path, wal)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = os.open(self._wal_path, os.O_WRONLY)
        self._end = len(wal)
        self._tail.attach(self._fd, self._end, self._end)
        elapsed = time.perf_counter() - started if self._fsync else 0.0
        return SaveStats(len(self._entries) + 2, len(wal) + len(payload), elapsed)

    def _replace_file(self, path: Path, content: bytes) -> None:
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, content)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        if self._fsync:
            _fsync_directory(self._directory)

    def _load_snapshot(self) -> Snapshot | None:
        if not self._snapshot_path.exists():
            return None
        raw = self._snapshot_path.read_bytes()
        header = len(SNAPSHOT_MAGIC) + _CRC.size
        if len(raw) < header or not raw.startswith(SNAPSHOT_MAGIC):
            raise StorageCorruption(
                f"{self._snapshot_path} is not a lockbench snapshot (bad header); it is written "
                "atomically, so this is not a crash artefact: restore the node from a peer"
            )
        (crc,) = _CRC.unpack_from(raw, len(SNAPSHOT_MAGIC))
        payload = raw[header:]
        if zlib.crc32(payload) != crc:
            raise StorageCorruption(
                f"{self._snapshot_path} fails its CRC check; wipe the directory and let the "
                "node catch up from the leader"
            )
        try:
            return decode_snapshot(payload)
        except RaftProtocolError as error:
            raise StorageCorruption(f"{self._snapshot_path}: {error}") from None

    def _load_wal(self) -> tuple[HardState, list[Entry], int]:
        """The hard state, the entries after the snapshot, and where the records end."""
        hard_state = HardState()
        entries: list[Entry] = []
        if not self._wal_path.exists():
            self._create_empty_wal()
            return hard_state, entries, len(WAL_MAGIC)
        raw = self._wal_path.read_bytes()
        if len(raw) < len(WAL_MAGIC) and WAL_MAGIC.startswith(raw):
            logger.warning("%s: torn header of a new WAL; starting it again", self._wal_path)
            self._create_empty_wal()
            return hard_state, entries, len(WAL_MAGIC)
        if not raw.startswith(WAL_MAGIC):
            raise StorageCorruption(
                f"{self._wal_path} does not start with the lockbench WAL header; refusing to "
                "touch it (is the data directory right?)"
            )
        scan = scan_records(raw)
        base = self._snapshot.meta.index if self._snapshot else 0
        valid_length = scan.valid_length
        problem = scan.problem
        for record in scan.records:
            try:
                if record.kind is RecordKind.HARD_STATE:
                    hard_state = decode_hard_state(record.payload)
                    continue
                entry = decode_entry(record.payload)
            except RaftProtocolError as error:
                valid_length, problem = record.offset, f"undecodable record: {error}"
                break
            if entry.index <= base:
                continue
            if entry.index > base + len(entries) + 1:
                raise StorageCorruption(
                    f"{self._wal_path}: entry {entry.index} follows entry "
                    f"{base + len(entries)}: the log has a hole; restore the node from a peer"
                )
            del entries[entry.index - base - 1 :]
            entries.append(entry)
        if problem is not None:
            logger.warning(
                "%s: %s; truncating %d bytes of torn/corrupt tail at byte %d (never applied)",
                self._wal_path,
                problem,
                len(raw) - valid_length,
                valid_length,
            )
            # Cut everything after the valid prefix, zeros included: bytes of a torn write
            # left further on must not line up behind records written later.
            with open(self._wal_path, "r+b") as handle:
                handle.truncate(valid_length)
                if self._fsync:
                    os.fsync(handle.fileno())
        return hard_state, entries, valid_length

    def _create_empty_wal(self) -> None:
        self._replace_file(self._wal_path, WAL_MAGIC)
