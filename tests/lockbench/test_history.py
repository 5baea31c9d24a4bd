"""The history file is the contract between running and checking: prove its properties."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockbench.history import (
    HistoryError,
    Op,
    PairingError,
    pair_calls,
    read_history,
    read_history_lenient,
)
from lockbench.history_writer import HistoryWriter


def test_writer_assigns_increasing_indices_and_times(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.append(0, "invoke", "acquire", "a", {"timeout": 1.0})
        writer.append(0, "ok", "acquire", "a", 17, node="n1", session="s1")
        writer.append("nemesis", "info", "start-partition", None, {"nodes": ["n1"]})
    ops = read_history(path)
    assert [op.index for op in ops] == [0, 1, 2]
    assert ops[0].time <= ops[1].time <= ops[2].time
    assert ops[1].value == 17
    assert ops[1].node == "n1"
    assert ops[1].session == "s1"
    assert ops[2].process == "nemesis"
    assert not ops[2].is_client


def test_unknown_fields_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.append(3, "invoke", "read", "k", None, latency_hint=5)
    (op,) = read_history(path)
    assert op.extra == {"latency_hint": 5}
    assert Op.from_json(op.to_json()) == op


@pytest.mark.process
def test_killed_writer_leaves_a_valid_prefix(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from lockbench.history_writer import HistoryWriter\n"
        "w = HistoryWriter(Path(sys.argv[1]))\n"
        "for i in range(500):\n"
        "    w.append(i % 5, 'invoke', 'acquire', 'a', None)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert proc.returncode == -9
    ops = read_history(path)
    assert len(ops) == 500
    assert [op.index for op in ops] == list(range(500))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"index": 0, "time": 1, "process": 0, "type": "invoke"', "not valid JSON"),
        ('{"index": 0, "time": 1, "process": 0, "type": "maybe", "f": "x"}', "type must be"),
        ('{"index": 0, "time": 1.5, "process": 0, "type": "ok", "f": "x"}', "time must be"),
        ('{"time": 1, "process": 0, "type": "ok", "f": "x"}', "missing field 'index'"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_lines_are_reported_with_their_line_number(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "h.jsonl"
    good = json.dumps(
        {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read", "key": None}
    )
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert info.value.line == 2
    assert reason in str(info.value)
    ops, problems = read_history_lenient(path)
    assert len(ops) == 1
    assert problems[0].line == 2


def _op(index: int, process: int | str, typ: str, f: str = "acquire") -> Op:
    return Op.from_json({"index": index, "time": index, "process": process, "type": typ, "f": f})


def test_pairing_matches_each_invoke_with_its_process_completion() -> None:
    history = [
        _op(0, 0, "invoke"),
        _op(1, 1, "invoke"),
        _op(2, "nemesis", "invoke", "start-kill"),
        _op(3, 1, "ok"),
        _op(4, 0, "info"),
        _op(5, 2, "invoke"),
    ]
    calls = pair_calls(history)
    assert [(c.invoke.index, c.completion.index if c.completion else None) for c in calls] == [
        (0, 4),
        (1, 3),
        (5, None),
    ]
    assert calls[2].outcome is None


def test_pairing_rejects_a_completion_without_an_invocation() -> None:
    with pytest.raises(PairingError, match="op 0: ok completion of acquire by process 7"):
        pair_calls([_op(0, 7, "ok")])


def test_pairing_rejects_a_second_invoke_while_pending() -> None:
    with pytest.raises(PairingError, match="still pending"):
        pair_calls([_op(0, 1, "invoke"), _op(1, 1, "invoke")])


def test_history_module_has_no_dependency_on_the_runner() -> None:
    # Checkers run on old store directories and foreign histories: the format must stand alone.
    source = (Path(__file__).parents[2] / "lockbench" / "history.py").read_text()
    assert "from bench" not in source
    assert "import bench" not in source
    assert os.path.exists(Path(__file__).parents[2] / "docs" / "history.md")
