"""``lockbench check A B C`` and ``lockbench check DIR``: many histories in one process, a line
each and a summary, the exit code of the worst."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockbench.run_dir import RESULTS_FILE
from tests.bench.checker.checker_histories import history
from tests.bench.checker.test_checker_cli_and_inputs import (
    GOOD,
    STALE_READ,
    lockbench_check,
    write_jsonl,
)


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line]


def test_several_files_get_a_line_each_and_the_worst_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", GOOD)
    bad = write_jsonl(tmp_path / "bad.jsonl", STALE_READ)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"index": 0}\n{"index": 1}\n')
    argv = ["--checkers", "linearizable"]
    code, out, _ = lockbench_check([str(good), str(bad), str(broken), *argv], capsys)
    lines = _lines(out)
    assert len(lines) == 4
    assert lines[0].startswith("valid")
    assert str(good) in lines[0]
    assert lines[1].startswith("invalid")
    assert "cannot be linearized" in lines[1]
    assert lines[2].startswith("error")
    assert "missing field 'time'" in lines[2]
    assert lines[3].startswith("3 histories: 1 valid, 1 invalid, 1 bad input")
    assert code == 1  # invalid is the worst outcome

    code, out, _ = lockbench_check([str(good), str(broken), *argv], capsys)
    assert code == 2  # bad input beats valid
    code, out, _ = lockbench_check([str(good), str(good), *argv], capsys)
    assert code == 0
    assert _lines(out)[-1].startswith("1 histories: 1 valid")


CRASHED_HOLDER = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1, {"session": "s0"}),
    (0, "invoke", "release", "L", None),
    (0, "info", "release", "L", None),
)


def test_unknown_and_bad_input_rank_between_invalid_and_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashed = write_jsonl(tmp_path / "crashed.jsonl", CRASHED_HOLDER)
    # liveness cannot judge a crashed holder without the ttl option: unknown, reason shown
    code, out, _ = lockbench_check(
        [str(crashed), str(crashed.parent), "--checkers", "liveness"], capsys
    )
    assert _lines(out)[0].startswith("unknown")
    assert "liveness unknown (" in out
    assert code == 3
    missing = str(tmp_path / "missing.jsonl")
    code, out, _ = lockbench_check([str(crashed), missing, "--checkers", "liveness"], capsys)
    assert _lines(out)[1].startswith("error")
    assert "no such history file" in out
    assert code == 2  # bad input is worse than unknown


def test_a_directory_of_runs_and_files_is_checked_entry_by_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    for name, ops in (("run-1", GOOD), ("run-2", STALE_READ)):
        (store / name).mkdir(parents=True)
        write_jsonl(store / name / "history.jsonl", ops)
    (store / "latest").symlink_to(store / "run-2")  # the same run once
    write_jsonl(store / "extra.jsonl", GOOD)
    (store / "notes.txt").write_text("not a history")
    code, out, _ = lockbench_check([str(store), "--checkers", "linearizable"], capsys)
    lines = _lines(out)
    assert [line.split()[0] for line in lines[:-1]] == ["valid", "valid", "invalid"]
    assert lines[-1].startswith("3 histories: 2 valid, 1 invalid")
    assert code == 1
    # run directories get their results.json, as a single check would write it
    results = json.loads((store / "run-2" / RESULTS_FILE).read_text())
    assert results["verdict"] == "invalid"


def test_a_single_run_directory_still_prints_its_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "history.jsonl", GOOD)
    code, out, _ = lockbench_check([str(run), "--checkers", "linearizable"], capsys)
    assert code == 0
    assert json.loads(out)["verdict"] == "valid"


def test_an_empty_directory_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = lockbench_check([str(tmp_path)], capsys)
    assert code == 2
    assert "no run directories or history files" in err
