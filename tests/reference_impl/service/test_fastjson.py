"""fastjson gives the standard library's results, with or without orjson: what it writes reads back
as json reads it, and any bytes read to the same value, or to a ValueError where json raises one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_impl.service import fastjson

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None), max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def _stdlib(data: bytes) -> tuple[str, Any]:
    try:
        return "value", repr(json.loads(data.decode("utf-8")))
    except ValueError:
        return "error", None


def _fast(data: bytes) -> tuple[str, Any]:
    try:
        return "value", repr(fastjson.loads(data))
    except ValueError:
        return "error", None


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "orjson":
        if not fastjson.accelerated():
            pytest.skip("orjson is not installed (scripts/setup.sh installs it)")
    else:
        monkeypatch.setattr(fastjson, "orjson", None)
    return str(request.param)


@given(value=json_values)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_what_it_writes_reads_back_as_the_standard_library_reads_it(
    backend: str, value: Any
) -> None:
    written = fastjson.dumps(value)
    assert written.isascii(), "escaped, so any str (even a lone surrogate) goes on the wire"
    assert fastjson.loads(written) == json.loads(json.dumps(value))


@given(value=json_values, cut=st.integers(0, 64), flip=st.integers(0, 255))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_bytes_decode_to_the_same_value_or_error(
    backend: str, value: Any, cut: int, flip: int
) -> None:
    data = bytearray(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if data:
        data[cut % len(data)] ^= flip
    for sample in (bytes(data), bytes(data[: cut % (len(data) + 1)])):
        assert _fast(sample) == _stdlib(sample)


@pytest.mark.parametrize(
    "data",
    [b'"\\ud800"', b"NaN", b"1e400", b"\xef\xbb\xbf{}", b'{"a":1,"a":2}', b"18446744073709551616",
     b"-99999999999999999999999", b"[1234567890123456789.5]",
     b'"\x00"', b"[1,]", b"\xff", b"[" * 50 + b"]" * 50],
)  # fmt: skip
def test_inputs_orjson_refuses_or_reads_differently_get_the_standard_librarys_answer(
    backend: str, data: bytes
) -> None:
    assert _fast(data) == _stdlib(data)
