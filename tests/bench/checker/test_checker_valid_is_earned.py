"""``lockbench check`` never answers valid for a history that proved nothing (issue 15).

Each case is one a new user met: an empty history, a set-up-failed run, a run whose every op
ended ``info``, a history of releases alone, ``--model`` that did not force the check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.checking import run_checkers
from tests.bench.checker.checker_histories import history
from tests.bench.checker.test_checker_cli_and_inputs import lockbench_check, write_jsonl


def test_an_empty_history_is_unknown_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("", encoding="utf-8")
    code, out, _ = lockbench_check([str(path)], capsys)
    document = json.loads(out)
    assert code == 3
    assert document["verdict"] == "unknown"
    assert "no client operations" in document["checkers"]["stats"]["reason"]
    # whatever checker is named, nothing was checked
    code, out, _ = lockbench_check([str(path), "--checkers", "mutual-exclusion"], capsys)
    checkers = json.loads(out)["checkers"]
    assert code == 3
    assert checkers["mutual-exclusion"]["verdict"] == "unknown"
    assert "nothing to check" in checkers["mutual-exclusion"]["reason"]


def test_a_setup_failed_run_stays_unknown_when_rechecked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what the runner leaves when the cluster could not be set up (store/latest points here)
    (tmp_path / "history.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "test.yaml").write_text("name: default\nworkload: mutex\nttl: 3\n")
    notes = {"started": False, "setup_failed": True, "interrupted": False}
    before = {"verdict": "unknown", "checkers": {}, "errors": ["ssh refused"], "run": notes}
    (tmp_path / "results.json").write_text(json.dumps(before), encoding="utf-8")
    code, out, _ = lockbench_check([str(tmp_path)], capsys)
    document = json.loads(out)
    assert code == 3
    assert document["verdict"] == "unknown"
    assert "set-up failed" in document["reason"]
    assert all(r["verdict"] != "valid" for r in document["checkers"].values())
    after = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert after["verdict"] == "unknown"
    assert after["run"]["setup_failed"] is True
    assert after["errors"] == ["ssh refused"]


def test_a_run_where_every_op_ended_info_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the service never answered: 84 acquires, every one info
    records = []
    for process in range(84):
        records += [
            (process, "invoke", "acquire", "L", {"timeout": 1}),
            (process, "info", "acquire", "L", None, {"error": "timeout"}),
        ]
    path = write_jsonl(tmp_path / "h.jsonl", history(*records))
    code, out, _ = lockbench_check(
        [str(path), "--checkers", "linearizable,mutual-exclusion"], capsys
    )
    document = json.loads(out)
    assert code == 3
    assert document["verdict"] == "unknown"
    assert document["checkers"]["linearizable"]["verdict"] == "unknown"
    assert document["checkers"]["mutual-exclusion"]["verdict"] == "unknown"
    reason = document["checkers"]["stats"]["reason"]
    assert "acquire (84 invoked: 84 info)" in reason
    assert "ever succeeded" in reason


def test_a_history_of_releases_alone_gets_the_linearizability_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # process 0 releases a lock nobody holds, and the service says ok
    ops = history(
        (0, "invoke", "release", "L", None),
        (0, "ok", "release", "L", None),
        (1, "invoke", "release", "L", None),
        (1, "fail", "release", "L", None, {"error": "not-holder"}),
    )
    path = write_jsonl(tmp_path / "h.jsonl", ops)
    code, out, _ = lockbench_check([str(path)], capsys)
    document = json.loads(out)
    assert "linearizable" in document["checkers"]
    assert document["checkers"]["linearizable"]["verdict"] == "invalid"
    assert code == 1


def test_model_forces_the_linearizability_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = history(
        (0, "invoke", "release", "L", None),
        (0, "ok", "release", "L", None),
    )
    write_jsonl(tmp_path / "history.jsonl", ops)
    (tmp_path / "test.yaml").write_text("checkers: [availability]\n", encoding="utf-8")
    code, out, _ = lockbench_check([str(tmp_path)], capsys)
    assert "linearizable" not in json.loads(out)["checkers"]  # the run named only availability
    code, out, _ = lockbench_check([str(tmp_path), "--model", "mutex"], capsys)
    linearizable = json.loads(out)["checkers"]["linearizable"]
    assert linearizable["stats"]["model"] == "mutex"
    assert linearizable["verdict"] == "invalid"
    assert code == 1


def test_no_checkers_at_all_is_never_valid() -> None:
    verdict, results = run_checkers([], [], {})
    assert verdict == "unknown"
    assert list(results) == ["stats"]
