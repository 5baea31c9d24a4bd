"""The write-ahead log's record framing: length + CRC32 per record, and a scanner that finds the
end of the valid prefix so a torn or corrupt tail is cut off instead of applied.

Record layout (big-endian): ``u32 payload_length | u32 crc32(kind || payload) | u8 kind | payload``.
The file starts with ``WAL_MAGIC`` so a foreign file is refused rather than "repaired". After the
last record the file may hold zeros (space filled ahead of the log, see zeroed_tail.py): a zero
header followed by nothing but zeros is the clean end. No valid record starts with zeros: its
kind byte is never 0.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from reference_impl.raft.limits import MAX_ENTRY_BYTES

WAL_MAGIC = b"LBWAL\x00\x01\n"
RECORD_HEADER = struct.Struct(">IIB")
MAX_RECORD_PAYLOAD = MAX_ENTRY_BYTES + 1024
"""An entry record is the entry's data plus a few fixed fields; anything longer is garbage."""


class RecordKind(enum.IntEnum):
    HARD_STATE = 1
    ENTRY = 2


@dataclass(frozen=True, slots=True)
class Record:
    kind: RecordKind
    payload: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The valid records, where the valid prefix ends, and why scanning stopped early."""

    records: tuple[Record, ...]
    valid_length: int
    problem: str | None


def encode_record(kind: RecordKind, payload: bytes) -> bytes:
    kind_byte = bytes((int(kind),))
    crc = zlib.crc32(payload, zlib.crc32(kind_byte))
    return RECORD_HEADER.pack(len(payload), crc, int(kind)) + payload


def scan_records(data: bytes) -> ScanResult:
    """Records of ``data`` (which starts with WAL_MAGIC) up to the first invalid one."""
    view = memoryview(data)
    offset = len(WAL_MAGIC)
    records: list[Record] = []
    while offset < len(data):
        problem = None
        if not any(view[offset : offset + RECORD_HEADER.size]):
            # Zeros where a header belongs: the zero-filled space ahead of the log's end
            # (zeroed_tail.py), if nothing but zeros follows; else a write torn into it.
            if data.count(0, offset) == len(data) - offset:
                return ScanResult(tuple(records), offset, None)
            problem = f"non-zero bytes after a zero record header at byte {offset}"
        elif offset + RECORD_HEADER.size > len(data):
            problem = f"torn record header at byte {offset}"
        else:
            length, crc, kind_value = RECORD_HEADER.unpack_from(view, offset)
            start = offset + RECORD_HEADER.size
            if length > MAX_RECORD_PAYLOAD:
                problem = f"record at byte {offset} claims {length} bytes"
            elif start + length > len(data):
                problem = f"torn record at byte {offset} ({length} bytes claimed)"
            else:
                payload = bytes(view[start : start + length])
                if zlib.crc32(payload, zlib.crc32(bytes((kind_value,)))) != crc:
                    problem = f"CRC mismatch in record at byte {offset}"
                elif kind_value not in RecordKind._value2member_map_:
                    problem = f"unknown record kind {kind_value} at byte {offset}"
                else:
                    records.append(Record(RecordKind(kind_value), payload, offset))
                    offset = start + length
                    continue
        return ScanResult(tuple(records), offset, problem)
    return ScanResult(tuple(records), offset, None)
