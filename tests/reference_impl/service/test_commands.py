"""Log-entry commands: every command round-trips, entries written by earlier versions (a keyed
JSON object) still decode, and anything else is a CommandError, never another exception."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.service.commands import (
    Acquire,
    CancelWait,
    CloseSession,
    Command,
    CommandError,
    EndLockDelay,
    ExpireSession,
    OpenSession,
    Release,
    decode_command,
    encode_command,
)

text = st.text(max_size=20)
seq = st.integers(0, 2**53 - 1)
seconds = st.floats(0, 3600, allow_nan=False)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(OpenSession, text, seq, seconds, seconds),
    st.builds(CloseSession, text, seq, text),
    st.builds(Acquire, text, seq, text, text, st.booleans(), st.booleans(), text),
    st.builds(Release, text, seq, text, text),
    st.builds(ExpireSession, text, seconds),
    st.builds(CancelWait, text, text),
    st.builds(EndLockDelay, text),
)


@given(commands)
@settings(max_examples=300, deadline=None)
def test_every_command_round_trips(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


def test_a_keyed_entry_of_an_earlier_version_still_decodes() -> None:
    old = {"op": "acquire", "client_id": "c1", "seq": 4, "session": "s9", "name": "jobs/1",
           "shared": False, "wait": True, "value": ""}  # fmt: skip
    data = json.dumps(old, separators=(",", ":"), sort_keys=True).encode()
    assert decode_command(data) == Acquire("c1", 4, "s9", "jobs/1", False, True, "")


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b'["fly"]', b'["release","c",1]', b'["undelay","a","b"]', b"\xff", b"{}", b"7"],
)
def test_anything_else_is_a_command_error(data: bytes) -> None:
    with pytest.raises(CommandError, match="undecodable command entry"):
        decode_command(data)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_command_error(data: bytes) -> None:
    """Anything but CommandError escaping fails the test."""
    with contextlib.suppress(CommandError):
        decode_command(data)
