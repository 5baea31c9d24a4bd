"""The sans-I/O client protocol codec: framing, limits, request validation, one error type."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.service.protocol import (
    MAX_FRAME_BYTES,
    REQUEST_SCHEMAS,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    parse_request,
)


def test_frames_split_anywhere_decode_to_the_same_messages() -> None:
    messages = [{"id": i, "op": "status", "args": {}} for i in range(1, 6)]
    data = b"".join(encode_frame(m) for m in messages)
    for cut in range(len(data)):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == messages


def test_oversized_or_empty_frames_break_the_connection() -> None:
    for length in (0, MAX_FRAME_BYTES + 1):
        decoder = FrameDecoder()
        with pytest.raises(ProtocolError) as excinfo:
            decoder.feed(struct.pack(">I", length))
        assert excinfo.value.fatal
        assert decoder.broken
        with pytest.raises(ProtocolError):
            decoder.feed(b"")


def test_frames_before_a_broken_one_are_still_delivered() -> None:
    good = encode_frame({"id": 1, "op": "status"})
    decoder = FrameDecoder()
    assert decoder.feed(good + struct.pack(">I", 3) + b"\xff\xfe\xfd") == [
        {"id": 1, "op": "status"}
    ]
    assert decoder.broken
    with pytest.raises(ProtocolError, match="UTF-8 JSON"):
        decoder.feed(b"")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"id": 1, "op": "fly"}, "unknown op"),
        ({"id": "1", "op": "status"}, "'id' must be an integer"),
        ({"id": 1, "op": "owner", "args": {}}, "missing argument 'name'"),
        ({"id": 1, "op": "owner", "args": {"name": ""}}, "must not be empty"),
        ({"id": 1, "op": "owner", "args": {"name": "x" * 300}}, "longer than 256"),
        ({"id": 1, "op": "owner", "args": {"name": 5}}, "must be a string"),
        ({"id": 1, "op": "owner", "args": {"name": "a", "x": 1}}, "unknown argument"),
        ({"id": 1, "op": "acquire", "args": {"client_id": "c", "seq": 1, "session": "s",
                                            "name": "a", "timeout": -1}}, "between 0"),
        ({"id": 1, "op": "open_session", "args": {"client_id": "c", "seq": 1, "ttl": 0.1}},
         "ttl must be between"),
    ],
)  # fmt: skip
def test_bad_requests_are_non_fatal_errors_naming_the_problem(
    request_: dict[str, object], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message) as excinfo:
        parse_request(request_)
    assert not excinfo.value.fatal


def classify(data: bytes) -> set[str]:
    """What the server would do with these bytes: deliver requests, reject some, or close."""
    outcomes: set[str] = set()
    decoder = FrameDecoder()
    try:
        messages = decoder.feed(data)
    except ProtocolError as exc:  # arbitrary bytes: an error is one possible outcome of several
        assert exc.fatal  # noqa: PT017
        assert str(exc)  # noqa: PT017
        return {"close"}
    for message in messages:
        try:
            request = parse_request(message)
        except ProtocolError as exc:
            assert not exc.fatal  # noqa: PT017
            assert str(exc)  # noqa: PT017
            outcomes.add("bad-request")
        else:
            assert request.op in REQUEST_SCHEMAS
            outcomes.add("request")
    if decoder.broken:
        outcomes.add("close")
    return outcomes


@given(st.binary(max_size=200))
def test_arbitrary_bytes_end_in_a_protocol_error_or_a_valid_request(data: bytes) -> None:
    assert classify(data) <= {"close", "bad-request", "request"}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c)
                    | st.dictionaries(st.text(), c), max_leaves=10))  # fmt: skip
def test_arbitrary_json_values_are_rejected_or_parsed_never_crash(value: object) -> None:
    body = json.dumps(value).encode()
    outcome = classify(struct.pack(">I", len(body)) + body)
    assert outcome == ({"close"} if not isinstance(value, dict) else outcome)
    assert outcome
