"""``lockbench check RUN_DIR`` on a run directory made by a real quick run: it checks with what
the run's test.yaml names and rewrites results.json through the runner's store, keeping the run's
notes and errors (issue 8)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bench.checker.test_checker_cli_and_inputs import lockbench_check

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

REPO = Path(__file__).resolve().parents[3]
QUICK_TEST = REPO / "tests" / "configs" / "memory-quick.yaml"
MUTEX_DEFAULTS = {
    "linearizable",
    "mutual-exclusion",
    "fencing",
    "liveness",
    "availability",
    "stats",  # always runs
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real ``lockbench run tests/configs/memory-quick.yaml`` (in-process memory backend)."""
    store = tmp_path_factory.mktemp("store")
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(QUICK_TEST), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (store / "latest").resolve()


@pytest.fixture
def run_dir(quick_run: Path, tmp_path: Path) -> Path:
    """A private copy of the quick run, so each test may edit its files."""
    return Path(shutil.copytree(quick_run, tmp_path / "run"))


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def edit_test_file(run_dir: Path, **keys: Any) -> None:
    path = run_dir / "test.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(keys)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def test_recheck_uses_the_workloads_checkers_and_the_runs_ttl(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written_by_run = read_json(run_dir / "results.json")
    (run_dir / "results.json").unlink()
    code, _, _ = lockbench_check([str(run_dir)], capsys)
    rechecked = read_json(run_dir / "results.json")
    assert code == 0
    assert set(rechecked["checkers"]) == set(written_by_run["checkers"]) == MUTEX_DEFAULTS
    # liveness is unknown without a ttl; the test's ttl (2 s) reached it.
    assert rechecked["checkers"]["liveness"]["verdict"] == "valid"
    assert rechecked["checkers"]["liveness"]["reason"] is None


def test_recheck_keeps_the_runs_notes_and_errors(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results_path = run_dir / "results.json"
    before = read_json(results_path)
    assert before["run"]["ops"]["ok"] > 0
    before["errors"] = ["could not stop memory on n1: example teardown failure"]
    before["verdict"] = "invalid"  # a stale verdict the re-check must replace
    results_path.write_text(json.dumps(before), encoding="utf-8")
    code, out, _ = lockbench_check([str(run_dir)], capsys)
    after = read_json(results_path)
    assert code == 0
    assert after["verdict"] == "valid"
    assert after["run"] == before["run"]
    assert after["errors"] == before["errors"]
    assert json.loads(out)["checkers"] == after["checkers"]


def test_recheck_uses_the_checkers_and_options_test_yaml_names(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_test_file(
        run_dir, checkers=["linearizable", "fencing"], checker_options={"model": "mutex"}
    )
    code, _, _ = lockbench_check([str(run_dir)], capsys)
    results = read_json(run_dir / "results.json")
    assert code == 0
    assert list(results["checkers"]) == ["linearizable", "fencing", "stats"]
    assert results["checkers"]["linearizable"]["stats"]["model"] == "mutex"


def test_command_line_flags_override_test_yaml(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_test_file(run_dir, checkers=["linearizable"], checker_options={"model": "mutex"})
    code, _, _ = lockbench_check([str(run_dir), "--checkers", "fencing,linearizable"], capsys)
    assert code == 0
    code, out, _ = lockbench_check([str(run_dir), "--model", "owned-mutex"], capsys)
    assert code == 0
    assert json.loads(out)["checkers"]["linearizable"]["stats"]["model"] == "owned-mutex"


def test_without_checkers_in_test_yaml_the_workloads_defaults_run(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The history holds acquires and no watches, so only the workload can have named these;
    # the watch checker then had nothing to check: unknown, never valid.
    edit_test_file(run_dir, workload="watch", checkers=None)
    code, out, _ = lockbench_check([str(run_dir)], capsys)
    checkers = json.loads(out)["checkers"]
    assert list(checkers) == ["watches", "mutual-exclusion", "availability", "stats"]
    assert code == 3
    assert checkers["watches"]["verdict"] == "unknown"
    assert "no watch operation succeeded" in checkers["watches"]["reason"]


def test_an_unknown_workload_falls_back_to_what_the_history_contains(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_test_file(run_dir, workload="retired-workload", checkers=None, ttl=None)
    code, out, _ = lockbench_check([str(run_dir)], capsys)
    assert code == 0
    # Acquires without a ttl: every lock checker but liveness.
    assert set(json.loads(out)["checkers"]) == MUTEX_DEFAULTS - {"liveness"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("checkers: fencing\n", "checkers must be a list"),
        ("checker_options: [ttl]\n", "checker_options must be a mapping"),
        ("checker_options: {tll: 2}\n", "unknown checker option"),
        ("name: [unclosed\n", "cannot read the run's test file"),
    ],
)
def test_a_bad_test_yaml_exits_two_naming_the_problem(
    run_dir: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "test.yaml").write_text(content, encoding="utf-8")
    code, _, err = lockbench_check([str(run_dir)], capsys)
    assert code == 2
    assert message in err
