"""Typed decoding of history lines gives exactly what the stdlib path gives, and a torn tail is
read as the prefix before it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.checker.loading import load_history
from lockbench.history import (
    HistoryError,
    Op,
    iter_numbered_ops,
    read_history,
    read_history_lenient,
)
from lockbench.history import _decode_exact as decode_exact

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
FIELD_VALUES = {
    "index": st.integers(-2, 2**65) | st.booleans() | st.floats(allow_nan=False) | st.none(),
    "time": st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=2),
    "process": st.integers(-3, 30) | st.sampled_from(["nemesis", "", "x"]) | st.booleans(),
    "type": st.sampled_from(["invoke", "ok", "fail", "info", "maybe", ""]) | st.integers(0, 2),
    "f": st.sampled_from(["acquire", "read", "", "start-kill"]) | st.integers(0, 2),
    "key": st.none() | st.text(max_size=4) | st.integers(0, 3),
    "value": JSON_VALUES,
    "node": st.none() | st.text(max_size=3) | st.integers(0, 3),
    "error": st.none() | st.text(max_size=3) | st.booleans(),
    "session": st.none() | st.text(max_size=3) | st.integers(0, 3),
    "extra-field": JSON_VALUES,
    "lockbench:extra": JSON_VALUES,
}


@st.composite
def lines(draw: Any) -> str:
    """A JSON object line: mostly well-formed records, often with one field off."""
    obj: dict[str, Any] = {}
    for name, values in FIELD_VALUES.items():
        required = name in ("index", "time", "process", "type", "f")
        if draw(st.integers(0, 9)) < (9 if required else 3):
            good = {
                "index": st.integers(0, 10**12),
                "time": st.integers(0, 10**15),
                "process": st.integers(0, 30) | st.just("nemesis"),
                "type": st.sampled_from(["invoke", "ok", "fail", "info"]),
                "f": st.sampled_from(["acquire", "release", "read"]),
            }.get(name, values)
            obj[name] = draw(values if draw(st.integers(0, 5)) == 0 else good)
    return json.dumps(obj)


def _outcome(decode: Any) -> Op | str:
    try:
        return decode()  # type: ignore[no-any-return]
    except HistoryError as exc:
        return exc.reason


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines())
def test_typed_decoding_gives_the_stdlib_path_s_op_or_error(line: str) -> None:
    exact = _outcome(lambda: decode_exact(line, "h", 1))
    for raw in (line + "\n", (line + "\n").encode()):
        fast = _outcome(lambda raw=raw: next(iter_numbered_ops([raw], "h"))[1])
        assert fast == exact, (line, fast, exact)


def test_repeated_strings_and_small_maps_are_shared_exactly(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    record = {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "acquire", "key": "L"}
    values: list[Any] = [
        {"timeout": 1.0},
        {"timeout": 1},
        {"timeout": True},
        {"timeout": 1.0},
        {"b": 1, "a": 2},
        {"a": 2, "b": 1},
        {"timeout": [1]},
        {"timeout": [1]},
    ]
    lines = [json.dumps({**record, "index": i, "value": v}) for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    ops = read_history(path)
    assert ops[0].f is ops[7].f
    assert ops[0].key is ops[7].key
    for op, value in zip(ops, values, strict=True):
        assert json.dumps(op.value) == json.dumps(value)  # types and field order kept
    assert ops[0].value is ops[3].value
    assert ops[0].value is not ops[1].value
    assert ops[1].value is not ops[2].value
    assert ops[4].value is not ops[5].value


def _records(n: int) -> list[str]:
    out = []
    for i in range(n):
        typ = "invoke" if i % 2 == 0 else "ok"
        record = {"index": i, "time": i, "process": 0, "type": typ, "f": "write", "key": "r"}
        out.append(json.dumps({**record, "value": i // 2}))
    return out


def test_a_history_torn_mid_line_is_read_as_the_prefix_before_the_tear(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    whole = "\n".join(_records(6)) + "\n"
    path.write_text(whole + _records(7)[6][:17])
    assert [op.index for op in read_history(path)] == list(range(6))
    assert [op.index for op in load_history(path)] == list(range(6))
    ops, problems = read_history_lenient(path)
    assert len(ops) == 6
    assert problems
    assert problems[0].line == 7


def test_a_bad_line_in_the_middle_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    records = _records(4)
    path.write_text("\n".join([*records[:2], records[2][:10], records[3]]))
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert info.value.line == 3
    assert "truncated?" in info.value.reason


WRITER = """
import sys, time
from lockbench.history_writer import HistoryWriter
from pathlib import Path
with HistoryWriter(Path(sys.argv[1])) as w:
    print("ready", flush=True)
    i = 0
    while True:
        w.append(i % 5, "invoke", "write", "r", "x" * 2000)
        w.append(i % 5, "ok", "write", "r", "x" * 2000)
        i += 1
"""


@pytest.mark.process
def test_a_history_whose_writer_was_killed_is_read_as_a_prefix(tmp_path: Path) -> None:
    """SIGKILL the writer mid-stream; what it left reads as complete calls plus maybe a tail."""
    path = tmp_path / "history.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        while path.stat().st_size < 2_000_000:
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    ops = load_history(path)
    assert len(ops) > 100
    assert [op.index for op in ops] == list(range(len(ops)))
