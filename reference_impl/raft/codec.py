"""Binary encoding of Raft messages, entries and hard state (sans-I/O: bytes in, values out).

Layout: one version byte, one type byte, then fixed-width big-endian fields (struct). Strings are
a u16 length plus UTF-8, blobs a u32 length plus bytes, each checked against the limits in
``reference_impl.raft.limits``. Anything malformed raises ``RaftProtocolError`` with a message that
says what was wrong and where; nothing else escapes ``decode_message``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from reference_impl.raft.errors import RaftProtocolError
from reference_impl.raft.limits import (
    MAX_CTX_BYTES,
    MAX_ENTRIES_PER_MESSAGE,
    MAX_ENTRY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_NODE_ID_BYTES,
    MAX_SNAPSHOT_BYTES,
)
from reference_impl.raft.types import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

CODEC_VERSION = 1
MAX_VOTERS = 64
"""A Raft group of more than a handful of voters is already unusual (etcd recommends <= 7)."""
MAX_INT = (1 << 63) - 1
"""Terms and indexes are non-negative and fit a signed 64-bit integer, as in etcd."""

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# Fast paths for the two messages of every batch (AppendEntries and its response) and for
# entries: whole fixed-width runs packed with one struct call. The layout is the field-by-field
# one below exactly; "q" packs 0..2**63-1 as "Q" does, and a negative value (a decoded field of
# 2**63 or more) sends the caller to the careful path, which says what is wrong.
_PREFIX = struct.Struct(">BBH")  # version, type, length of src
_ENTRY_HEAD = struct.Struct(">qqBI")  # term, index, kind, length of data
_APPEND_FIXED = struct.Struct(">qqqqqI")  # term, prev index, prev term, commit, read round, count
_APPEND_RESPONSE_FIXED = struct.Struct(">qBqqqq")  # term, success, index, hints, read round
_KINDS = {int(kind): kind for kind in EntryKind}

_TAG_VOTE_REQUEST = 1
_TAG_VOTE_RESPONSE = 2
_TAG_APPEND = 3
_TAG_APPEND_RESPONSE = 4
_TAG_SNAPSHOT = 5
_TAG_TIMEOUT_NOW = 6
_TAG_READ_REQUEST = 7
_TAG_READ_RESPONSE = 8


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self.parts.append(_U8.pack(value))

    def u16(self, value: int) -> None:
        self.parts.append(_U16.pack(value))

    def u32(self, value: int) -> None:
        self.parts.append(_U32.pack(value))

    def u64(self, value: int) -> None:
        if not 0 <= value <= MAX_INT:
            raise RaftProtocolError(f"integer {value} out of range for encoding")
        self.parts.append(_U64.pack(value))

    def text(self, value: str) -> None:
        raw = value.encode()
        if len(raw) > MAX_NODE_ID_BYTES:
            raise RaftProtocolError(f"node id {value!r} exceeds MAX_NODE_ID_BYTES")
        self.u16(len(raw))
        self.parts.append(raw)

    def blob(self, value: bytes, limit: int, what: str) -> None:
        if len(value) > limit:
            raise RaftProtocolError(f"{what} of {len(value)} bytes exceeds its limit of {limit}")
        self.u32(len(value))
        self.parts.append(value)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = memoryview(data)
        self.offset = 0
        self.what = what

    def _take(self, size: int, field: str) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise RaftProtocolError(
                f"{self.what}: truncated at byte {self.offset} while reading {field} "
                f"({size} bytes needed, {len(self.data) - self.offset} left)"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self, field: str) -> int:
        return int(_U8.unpack(self._take(1, field))[0])

    def u16(self, field: str) -> int:
        return int(_U16.unpack(self._take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(_U32.unpack(self._take(4, field))[0])

    def u64(self, field: str) -> int:
        value = int(_U64.unpack(self._take(8, field))[0])
        if value > MAX_INT:
            raise RaftProtocolError(f"{self.what}: {field} {value} exceeds 2**63-1")
        return value

    def flag(self, field: str) -> bool:
        value = self.u8(field)
        if value > 1:
            raise RaftProtocolError(f"{self.what}: {field} must be 0 or 1, got {value}")
        return value == 1

    def text(self, field: str, *, allow_empty: bool = False) -> str:
        size = self.u16(field)
        if size > MAX_NODE_ID_BYTES:
            raise RaftProtocolError(f"{self.what}: {field} of {size} bytes exceeds limit")
        if size == 0 and not allow_empty:
            raise RaftProtocolError(f"{self.what}: {field} is empty")
        try:
            return bytes(self._take(size, field)).decode()
        except UnicodeDecodeError as error:
            raise RaftProtocolError(f"{self.what}: {field} is not UTF-8: {error}") from None

    def blob(self, field: str, limit: int) -> bytes:
        size = self.u32(field)
        if size > limit:
            raise RaftProtocolError(
                f"{self.what}: {field} of {size} bytes exceeds its limit of {limit}"
            )
        return bytes(self._take(size, field))

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise RaftProtocolError(
                f"{self.what}: {len(self.data) - self.offset} unexpected trailing bytes"
            )


# ---------------------------------------------------------------------------------------------
# Entries, hard state and snapshots (shared with the storage's records)


def _write_entry(writer: _Writer, entry: Entry) -> None:
    writer.u64(entry.term)
    writer.u64(entry.index)
    writer.u8(int(entry.kind))
    writer.blob(entry.data, MAX_ENTRY_BYTES, f"entry {entry.index}")


def _read_entry(reader: _Reader) -> Entry:
    term = reader.u64("entry term")
    index = reader.u64("entry index")
    kind_value = reader.u8("entry kind")
    try:
        kind = EntryKind(kind_value)
    except ValueError:
        raise RaftProtocolError(f"{reader.what}: unknown entry kind {kind_value}") from None
    data = reader.blob("entry data", MAX_ENTRY_BYTES)
    if index < 1 or term < 1:
        raise RaftProtocolError(f"{reader.what}: entry index {index} term {term} must be >= 1")
    return Entry(term, index, data, kind)


def encode_entry(entry: Entry) -> bytes:
    data = entry.data
    if entry.term < 0 or entry.index < 0 or len(data) > MAX_ENTRY_BYTES:
        writer = _Writer()  # the careful path says what is wrong
        _write_entry(writer, entry)
        return writer.getvalue()
    try:
        return _ENTRY_HEAD.pack(entry.term, entry.index, entry.kind, len(data)) + data
    except struct.error:
        raise RaftProtocolError(f"entry {entry.index}: term or index out of range") from None


def decode_entry(data: bytes) -> Entry:
    reader = _Reader(data, "entry")
    entry = _read_entry(reader)
    reader.finish()
    return entry


def encode_hard_state(state: HardState) -> bytes:
    writer = _Writer()
    writer.u64(state.term)
    writer.text(state.vote or "")
    writer.u64(state.commit)
    return writer.getvalue()


def decode_hard_state(data: bytes) -> HardState:
    reader = _Reader(data, "hard state")
    term = reader.u64("term")
    vote = reader.text("vote", allow_empty=True) or None
    commit = reader.u64("commit")
    reader.finish()
    return HardState(term, vote, commit)


def _write_snapshot_meta(writer: _Writer, meta: SnapshotMeta) -> None:
    writer.u64(meta.index)
    writer.u64(meta.term)
    if len(meta.voters) > MAX_VOTERS:
        raise RaftProtocolError(f"{len(meta.voters)} voters exceed MAX_VOTERS ({MAX_VOTERS})")
    writer.u16(len(meta.voters))
    for voter in meta.voters:
        writer.text(voter)


def _read_snapshot_meta(reader: _Reader) -> SnapshotMeta:
    index = reader.u64("snapshot index")
    term = reader.u64("snapshot term")
    count = reader.u16("voter count")
    if count > MAX_VOTERS:
        raise RaftProtocolError(f"{reader.what}: {count} voters exceed MAX_VOTERS")
    voters = tuple(reader.text("voter") for _ in range(count))
    return SnapshotMeta(index, term, voters)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    writer = _Writer()
    _write_snapshot_meta(writer, snapshot.meta)
    writer.blob(snapshot.data, MAX_SNAPSHOT_BYTES, "snapshot data")
    return writer.getvalue()


def decode_snapshot(data: bytes) -> Snapshot:
    reader = _Reader(data, "snapshot")
    meta = _read_snapshot_meta(reader)
    payload = reader.blob("snapshot data", MAX_SNAPSHOT_BYTES)
    reader.finish()
    return Snapshot(meta, payload)


# ---------------------------------------------------------------------------------------------
# Messages


def encode_message(msg: Message) -> bytes:  # noqa: C901, PLR0912 - one branch per message type
    """Encode a message; raises RaftProtocolError if a field is out of range."""
    fast = _encode_fast(msg)
    if fast is not None:
        return fast
    writer = _Writer()
    writer.u8(CODEC_VERSION)
    if isinstance(msg, VoteRequest):
        tag = _TAG_VOTE_REQUEST
    elif isinstance(msg, VoteResponse):
        tag = _TAG_VOTE_RESPONSE
    elif isinstance(msg, AppendEntries):
        tag = _TAG_APPEND
    elif isinstance(msg, AppendResponse):
        tag = _TAG_APPEND_RESPONSE
    elif isinstance(msg, InstallSnapshot):
        tag = _TAG_SNAPSHOT
    elif isinstance(msg, TimeoutNow):
        tag = _TAG_TIMEOUT_NOW
    elif isinstance(msg, ReadIndexRequest):
        tag = _TAG_READ_REQUEST
    else:
        tag = _TAG_READ_RESPONSE
    writer.u8(tag)
    writer.text(msg.src)
    writer.text(msg.dst)
    writer.u64(msg.term)
    if isinstance(msg, VoteRequest):
        writer.u64(msg.last_log_index)
        writer.u64(msg.last_log_term)
        writer.u8(int(msg.pre_vote))
        writer.u8(int(msg.transfer))
    elif isinstance(msg, VoteResponse):
        writer.u8(int(msg.granted))
        writer.u8(int(msg.pre_vote))
    elif isinstance(msg, AppendEntries):
        writer.u64(msg.prev_index)
        writer.u64(msg.prev_term)
        writer.u64(msg.commit)
        writer.u64(msg.read_round)
        if len(msg.entries) > MAX_ENTRIES_PER_MESSAGE:
            raise RaftProtocolError(f"{len(msg.entries)} entries exceed MAX_ENTRIES_PER_MESSAGE")
        writer.u32(len(msg.entries))
        for entry in msg.entries:
            _write_entry(writer, entry)
    elif isinstance(msg, AppendResponse):
        writer.u8(int(msg.success))
        writer.u64(msg.index)
        writer.u64(msg.hint_index)
        writer.u64(msg.hint_term)
        writer.u64(msg.read_round)
    elif isinstance(msg, InstallSnapshot):
        _write_snapshot_meta(writer, msg.snapshot.meta)
        writer.blob(msg.snapshot.data, MAX_SNAPSHOT_BYTES, "snapshot data")
    elif isinstance(msg, ReadIndexRequest):
        writer.blob(msg.ctx, MAX_CTX_BYTES, "read ctx")
    elif isinstance(msg, ReadIndexResponse):
        writer.blob(msg.ctx, MAX_CTX_BYTES, "read ctx")
        writer.u64(msg.index)
        writer.u8(int(msg.success))
    return writer.getvalue()


def _encode_fast(msg: Message) -> bytes | None:
    """AppendEntries and AppendResponse in a few struct calls; None: use the careful path."""
    cls = type(msg)
    if cls is not AppendEntries and cls is not AppendResponse:
        return None
    src = msg.src.encode()
    dst = msg.dst.encode()
    if not 0 < len(src) <= MAX_NODE_ID_BYTES or not 0 < len(dst) <= MAX_NODE_ID_BYTES:
        return None
    try:
        if isinstance(msg, AppendEntries):
            entries = msg.entries
            if (
                len(entries) > MAX_ENTRIES_PER_MESSAGE
                or min(msg.term, msg.prev_index, msg.prev_term, msg.commit, msg.read_round) < 0
            ):
                return None
            parts = [
                _PREFIX.pack(CODEC_VERSION, _TAG_APPEND, len(src)),
                src,
                _U16.pack(len(dst)),
                dst,
                _APPEND_FIXED.pack(
                    msg.term, msg.prev_index, msg.prev_term, msg.commit, msg.read_round,
                    len(entries),
                ),
            ]  # fmt: skip
            pack_entry = _ENTRY_HEAD.pack
            for entry in entries:
                data = entry.data
                if entry.term < 0 or entry.index < 0 or len(data) > MAX_ENTRY_BYTES:
                    return None
                parts.append(pack_entry(entry.term, entry.index, entry.kind, len(data)))
                parts.append(data)
            return b"".join(parts)
        assert isinstance(msg, AppendResponse)
        if min(msg.term, msg.index, msg.hint_index, msg.hint_term, msg.read_round) < 0:
            return None
        return b"".join(
            (
                _PREFIX.pack(CODEC_VERSION, _TAG_APPEND_RESPONSE, len(src)),
                src,
                _U16.pack(len(dst)),
                dst,
                _APPEND_RESPONSE_FIXED.pack(
                    msg.term, msg.success, msg.index, msg.hint_index, msg.hint_term,
                    msg.read_round,
                ),
            )
        )  # fmt: skip
    except struct.error:
        return None


def _decode_fast(data: bytes) -> Message | None:
    """The fast paths' inverse for well-formed input; None: decode carefully (and say why)."""
    try:
        version, tag, src_len = _PREFIX.unpack_from(data, 0)
        if version != CODEC_VERSION or not 0 < src_len <= MAX_NODE_ID_BYTES:
            return None
        if tag != _TAG_APPEND and tag != _TAG_APPEND_RESPONSE:
            return None
        offset = 4 + src_len
        src = data[4:offset].decode()
        (dst_len,) = _U16.unpack_from(data, offset)
        if not 0 < dst_len <= MAX_NODE_ID_BYTES:
            return None
        start = offset + 2
        offset = start + dst_len
        dst = data[start:offset].decode()
        if tag == _TAG_APPEND_RESPONSE:
            term, success, index, hint_index, hint_term, read_round = (
                _APPEND_RESPONSE_FIXED.unpack_from(data, offset)
            )
            if offset + _APPEND_RESPONSE_FIXED.size != len(data) or success > 1:
                return None
            if min(term, index, hint_index, hint_term, read_round) < 0:
                return None
            return AppendResponse(
                src, dst, term, success == 1, index, hint_index, hint_term, read_round
            )
        term, prev_index, prev_term, commit, read_round, count = _APPEND_FIXED.unpack_from(
            data, offset
        )
        if count > MAX_ENTRIES_PER_MESSAGE or min(term, prev_index, prev_term, commit) < 0:
            return None
        if read_round < 0:
            return None
        offset += _APPEND_FIXED.size
        entries = []
        unpack_entry = _ENTRY_HEAD.unpack_from
        head = _ENTRY_HEAD.size
        kinds = _KINDS
        for _ in range(count):
            entry_term, entry_index, kind_value, size = unpack_entry(data, offset)
            offset += head
            end = offset + size
            kind = kinds.get(kind_value)
            if kind is None or size > MAX_ENTRY_BYTES or end > len(data):
                return None
            if entry_term < 1 or entry_index < 1:
                return None
            entries.append(Entry(entry_term, entry_index, data[offset:end], kind))
            offset = end
        if offset != len(data):
            return None
        return AppendEntries(
            src, dst, term, prev_index, prev_term, tuple(entries), commit, read_round
        )
    except (struct.error, UnicodeDecodeError):
        return None


def _decode_vote_request(r: _Reader, src: str, dst: str, term: int) -> Message:
    last_index = r.u64("last log index")
    last_term = r.u64("last log term")
    return VoteRequest(
        src, dst, term, last_index, last_term, r.flag("pre_vote"), r.flag("transfer")
    )


def _decode_vote_response(r: _Reader, src: str, dst: str, term: int) -> Message:
    granted = r.flag("granted")
    return VoteResponse(src, dst, term, granted, r.flag("pre_vote"))


def _decode_append(r: _Reader, src: str, dst: str, term: int) -> Message:
    prev_index = r.u64("prev index")
    prev_term = r.u64("prev term")
    commit = r.u64("commit")
    read_round = r.u64("read round")
    count = r.u32("entry count")
    if count > MAX_ENTRIES_PER_MESSAGE:
        raise RaftProtocolError(f"{r.what}: {count} entries exceed MAX_ENTRIES_PER_MESSAGE")
    entries = tuple(_read_entry(r) for _ in range(count))
    return AppendEntries(src, dst, term, prev_index, prev_term, entries, commit, read_round)


def _decode_append_response(r: _Reader, src: str, dst: str, term: int) -> Message:
    success = r.flag("success")
    index = r.u64("index")
    hint_index = r.u64("hint index")
    hint_term = r.u64("hint term")
    read_round = r.u64("read round")
    return AppendResponse(src, dst, term, success, index, hint_index, hint_term, read_round)


def _decode_snapshot(r: _Reader, src: str, dst: str, term: int) -> Message:
    meta = _read_snapshot_meta(r)
    data = r.blob("snapshot data", MAX_SNAPSHOT_BYTES)
    return InstallSnapshot(src, dst, term, Snapshot(meta, data))


def _decode_timeout_now(r: _Reader, src: str, dst: str, term: int) -> Message:
    return TimeoutNow(src, dst, term)


def _decode_read_request(r: _Reader, src: str, dst: str, term: int) -> Message:
    return ReadIndexRequest(src, dst, term, r.blob("read ctx", MAX_CTX_BYTES))


def _decode_read_response(r: _Reader, src: str, dst: str, term: int) -> Message:
    ctx = r.blob("read ctx", MAX_CTX_BYTES)
    index = r.u64("read index")
    return ReadIndexResponse(src, dst, term, ctx, index, r.flag("success"))


_DECODERS: dict[int, Callable[[_Reader, str, str, int], Message]] = {
    _TAG_VOTE_REQUEST: _decode_vote_request,
    _TAG_VOTE_RESPONSE: _decode_vote_response,
    _TAG_APPEND: _decode_append,
    _TAG_APPEND_RESPONSE: _decode_append_response,
    _TAG_SNAPSHOT: _decode_snapshot,
    _TAG_TIMEOUT_NOW: _decode_timeout_now,
    _TAG_READ_REQUEST: _decode_read_request,
    _TAG_READ_RESPONSE: _decode_read_response,
}


def decode_message(data: bytes) -> Message:
    """Decode one message; raises RaftProtocolError (only) for anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise RaftProtocolError(f"message of {len(data)} bytes exceeds MAX_MESSAGE_BYTES")
    fast = _decode_fast(bytes(data))
    if fast is not None:
        return fast
    reader = _Reader(data, "message")
    version = reader.u8("version")
    if version != CODEC_VERSION:
        raise RaftProtocolError(f"message: unsupported codec version {version}")
    tag = reader.u8("type")
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise RaftProtocolError(f"message: unknown message type {tag}")
    reader.what = f"{decoder.__name__.removeprefix('_decode_')} message"
    src = reader.text("src")
    dst = reader.text("dst")
    term = reader.u64("term")
    msg = decoder(reader, src, dst, term)
    reader.finish()
    return msg
