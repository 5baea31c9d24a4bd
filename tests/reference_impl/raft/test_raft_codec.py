"""The peer codec: every message survives a round trip, and malformed bytes only ever raise
RaftProtocolError (one error type, clear message), never anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.raft import codec
from reference_impl.raft.codec import (
    decode_entry,
    decode_hard_state,
    decode_message,
    encode_entry,
    encode_hard_state,
    encode_message,
)
from reference_impl.raft.errors import RaftProtocolError
from reference_impl.raft.limits import MAX_ENTRIES_PER_MESSAGE, MAX_ENTRY_BYTES
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

ids = st.sampled_from(["n1", "n2", "n3", "node-with-a-longer-name"])
counts = st.integers(min_value=0, max_value=2**63 - 1)
small = st.integers(min_value=0, max_value=10**6)
entries = st.builds(
    Entry,
    term=st.integers(1, 10**6),
    index=st.integers(1, 10**6),
    data=st.binary(max_size=64),
    kind=st.sampled_from(EntryKind),
)
snapshots = st.builds(
    Snapshot,
    meta=st.builds(
        SnapshotMeta,
        index=small,
        term=small,
        voters=st.lists(ids, max_size=5).map(tuple),
    ),
    data=st.binary(max_size=256),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(VoteRequest, ids, ids, counts, counts, counts, st.booleans(), st.booleans()),
    st.builds(VoteResponse, ids, ids, counts, st.booleans(), st.booleans()),
    st.builds(
        AppendEntries,
        ids,
        ids,
        counts,
        counts,
        counts,
        st.lists(entries, max_size=5).map(tuple),
        counts,
        counts,
    ),
    st.builds(AppendResponse, ids, ids, counts, st.booleans(), counts, counts, counts, counts),
    st.builds(InstallSnapshot, ids, ids, counts, snapshots),
    st.builds(TimeoutNow, ids, ids, counts),
    st.builds(ReadIndexRequest, ids, ids, counts, st.binary(max_size=32)),
    st.builds(ReadIndexResponse, ids, ids, counts, st.binary(max_size=32), counts, st.booleans()),
)


@given(messages)
@settings(max_examples=120, deadline=None)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(messages, st.data())
@settings(max_examples=120, deadline=None)
def test_truncated_or_extended_messages_raise_protocol_error(
    msg: Message, data: st.DataObject
) -> None:
    encoded = encode_message(msg)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(RaftProtocolError):
        decode_message(encoded[:cut])
    with pytest.raises(RaftProtocolError, match="trailing"):
        decode_message(encoded + b"\x00")


@given(st.binary(max_size=512))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except RaftProtocolError:
        return
    assert encode_message(msg) == data, "whatever decodes must be the canonical encoding"


@given(messages, st.data())
@settings(max_examples=120, deadline=None)
def test_flipped_bytes_decode_or_raise_protocol_error(msg: Message, data: st.DataObject) -> None:
    encoded = bytearray(encode_message(msg))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_message(bytes(encoded))
    except RaftProtocolError:
        return
    assert encode_message(decoded) == bytes(encoded)


def test_unknown_version_type_and_flags_are_named_in_the_error() -> None:
    good = encode_message(TimeoutNow("n1", "n2", 3))
    with pytest.raises(RaftProtocolError, match="version"):
        decode_message(b"\x09" + good[1:])
    with pytest.raises(RaftProtocolError, match="unknown message type"):
        decode_message(good[:1] + b"\x63" + good[2:])
    vote = bytearray(encode_message(VoteResponse("n1", "n2", 3, True, False)))
    vote[-1] = 7
    with pytest.raises(RaftProtocolError, match="pre_vote must be 0 or 1"):
        decode_message(bytes(vote))


def test_size_limits_are_enforced_on_both_sides() -> None:
    too_big = Entry(1, 1, b"x" * (MAX_ENTRY_BYTES + 1))
    with pytest.raises(RaftProtocolError, match="exceeds"):
        encode_entry(too_big)
    many = tuple(Entry(1, i, b"") for i in range(1, MAX_ENTRIES_PER_MESSAGE + 2))
    with pytest.raises(RaftProtocolError, match="MAX_ENTRIES_PER_MESSAGE"):
        encode_message(AppendEntries("n1", "n2", 1, 0, 0, many, 0))
    header = encode_message(AppendEntries("n1", "n2", 1, 0, 0, (), 0))
    forged = header[:-4] + (MAX_ENTRIES_PER_MESSAGE + 1).to_bytes(4, "big")
    with pytest.raises(RaftProtocolError, match="MAX_ENTRIES_PER_MESSAGE"):
        decode_message(forged)
    with pytest.raises(RaftProtocolError, match="out of range"):
        encode_message(TimeoutNow("n1", "n2", -1))


def test_entries_and_hard_state_round_trip_for_storage() -> None:
    entry = Entry(3, 9, b"payload", EntryKind.NOOP)
    assert decode_entry(encode_entry(entry)) == entry
    for state in (HardState(), HardState(4, "n2", 17)):
        assert decode_hard_state(encode_hard_state(state)) == state
    with pytest.raises(RaftProtocolError, match="must be >= 1"):
        decode_entry(encode_entry(Entry(1, 1))[:8] + (0).to_bytes(8, "big") + b"\x00" + bytes(4))


@given(messages, st.data())
@settings(max_examples=300, deadline=None)
def test_the_fast_paths_write_and_read_exactly_what_the_careful_path_does(
    msg: Message, data: st.DataObject
) -> None:
    """AppendEntries/AppendResponse have struct fast paths; they must be byte-for-byte the
    field-by-field format, and on any mutated input either agree with the careful decoder or
    step aside for it (so malformed input still gets the careful path's error)."""
    encoded = encode_message(msg)
    fast = codec._encode_fast(msg)
    if isinstance(msg, AppendEntries | AppendResponse):
        assert fast == _encode_carefully(msg)
    if fast is not None:
        assert fast == encoded
    position = data.draw(st.integers(0, max(0, len(encoded) - 1)))
    flipped = bytearray(encoded)
    if flipped:
        flipped[position] ^= data.draw(st.integers(1, 255))
    mutated = bytes(flipped)
    quick = codec._decode_fast(mutated)
    if quick is not None:
        assert quick == _decode_carefully(mutated)


@contextlib.contextmanager
def _careful_path_only() -> Iterator[None]:
    """The codec with its struct fast paths off: what the fast paths must agree with."""
    saved = codec._encode_fast, codec._decode_fast
    codec._encode_fast = lambda _: None  # type: ignore[assignment]
    codec._decode_fast = lambda _: None  # type: ignore[assignment]
    try:
        yield
    finally:
        codec._encode_fast, codec._decode_fast = saved


def _encode_carefully(msg: Message) -> bytes:
    with _careful_path_only():
        return encode_message(msg)


def _decode_carefully(data: bytes) -> Message:
    with _careful_path_only():
        return decode_message(data)
