"""``lockbench nightly``: a small matrix of real (in-process memory backend) runs writes JUnit
XML a JUnit library reads, and a page with trends over every night of the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped

from bench.cli import main
from bench.runner.nightly import load_matrix, load_nights
from lockbench.errors import ConfigError

pytestmark = pytest.mark.slow  # a dozen short in-process runs, about a minute

MUTEX = {
    "workload": "mutex",
    "workload_options": {"locks": 2, "hold": 0.002, "think": 0.002, "acquire_timeout": 0.5},
    "concurrency": 4,
    "op_timeout": 1.0,
    "ttl": 1.0,
}


def write_matrix(directory: Path, **keys: Any) -> Path:
    data: dict[str, Any] = {
        "name": "tiny",
        "budget_minutes": 5,
        "time_limit": 1.0,
        "seeds": [1, 2],
        "backends": {
            "memory": {"backend": "memory"},
            "memory-broken": {"backend": "memory", "backend_options": {"unsafe": ["no-exclusion"]}},
        },
        "workloads": {"mutex": MUTEX},
        "nemeses": {"none": []},
    }
    data.update(keys)
    path = directory / "matrix.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def nightly(*args: str) -> int:
    return main(["nightly", *args])


def test_two_nights_write_junit_a_parser_reads_and_a_trend_page(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path)
    store = tmp_path / "store"
    junit_copy = tmp_path / "out" / "junit.xml"
    for _ in range(2):
        # the broken backend grants every acquire: invalid, so the night fails (exit 1)
        assert nightly(str(matrix), "--store", str(store), "--junit", str(junit_copy)) == 1
    nights = sorted((store / "nightly").iterdir())
    assert len(nights) == 2
    assert len(load_nights(store)) == 2

    xml = JUnitXml.fromfile(str(nights[-1] / "junit.xml"))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == 4
    by_name = {(case.classname, case.name): case for case in cases}
    assert set(by_name) == {
        (f"lockbench.{backend}.mutex", f"none@seed{seed}")
        for backend in ("memory", "memory-broken")
        for seed in (1, 2)
    }
    for seed in (1, 2):
        assert by_name[("lockbench.memory.mutex", f"none@seed{seed}")].is_passed
        broken = by_name[("lockbench.memory-broken.mutex", f"none@seed{seed}")]
        (failure,) = broken.result
        assert isinstance(failure, Failure)
        assert failure.type == "invalid"
        assert "report: " in (failure.text or "")
        assert "report.html" in (failure.text or "")
        assert "mutual-exclusion" in (failure.text or "") or "linearizable" in (failure.text or "")
    assert junit_copy.read_bytes() == (nights[-1] / "junit.xml").read_bytes()

    page = (nights[-1] / "index.html").read_text(encoding="utf-8")
    assert "Trends over 2 nights" in page
    for night in nights:
        assert night.name in page  # a column per night
    assert "memory-broken / mutex / none" in page
    assert page.count('class="verdict-invalid"') >= 4  # two seeds, two nights, in the trends
    assert "ok/s" in page
    assert "report.html" in page


def test_runs_past_the_budget_are_skipped_and_listed(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, budget_minutes=0.05)  # 3 s: no run fits its estimate
    store = tmp_path / "store"
    assert nightly(str(matrix), "--store", str(store)) == 0  # nothing failed; all skipped
    (night,) = (store / "nightly").iterdir()
    runs = json.loads((night / "nightly.json").read_text())["runs"]
    assert len(runs) == 4
    assert all("over the time budget" in r["skipped"] for r in runs)
    xml = JUnitXml.fromfile(str(night / "junit.xml"))
    results = [r for suite in xml for case in suite for r in case.result]
    assert len(results) == 4
    assert all(isinstance(r, Skipped) for r in results)
    assert "over the time budget" in (night / "index.html").read_text()


def test_unknown_runs_follow_the_exit_policy(tmp_path: Path) -> None:
    # a service that never answers: every acquire ends info, so the runs are unknown
    broken = {"backend": "memory", "backend_options": {"stuck_replies": 1.0}}
    matrix = write_matrix(tmp_path, backends={"stuck": broken}, seeds=[1])
    store = tmp_path / "store"
    assert nightly(str(matrix), "--store", str(store)) == 3
    assert nightly(str(matrix), "--store", str(store), "--on-unknown", "pass") == 0
    nights = sorted((store / "nightly").iterdir())
    results = [
        r
        for suite in JUnitXml.fromfile(str(nights[0] / "junit.xml"))
        for case in suite
        for r in case.result
    ]
    assert len(results) == 1
    assert isinstance(results[0], Failure)
    assert results[0].type == "unknown"
    assert "ever succeeded" in (results[0].message or "")
    passed = [
        r
        for suite in JUnitXml.fromfile(str(nights[1] / "junit.xml"))
        for case in suite
        for r in case.result
    ]
    assert len(passed) == 1
    assert isinstance(passed[0], Skipped)
    assert not isinstance(passed[0], Error)


def test_an_unknown_backend_is_refused_naming_the_run(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, backends={"etcdd": {}})
    with pytest.raises(ConfigError, match=r"run etcdd/mutex/none \(seed 1\).*backend"):
        load_matrix(matrix)
    assert nightly(str(matrix), "--store", str(tmp_path / "store")) == 2
    assert not (tmp_path / "store").exists()  # nothing ran


def test_the_shipped_matrix_is_valid_and_fits_its_budget() -> None:
    shipped = Path(__file__).resolve().parents[3] / "nightly.yaml"
    matrix = load_matrix(shipped)
    assert 45 * 60 <= matrix.budget_s <= 75 * 60
    backends = {cell.backend for cell in matrix.cells}
    assert "reference" in backends
