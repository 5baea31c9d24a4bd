"""``lockbench compare``: real runs in a matrix, refused cells say why, bad names come first."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.runner.matrix import Cell, MatrixSpec, plan_matrix, read_outcome
from lockbench.run_dir import write_results


def compare_dir(store: Path) -> Path:
    (directory,) = sorted((store / "compare").iterdir())
    return directory


def test_memory_runs_for_real_and_a_fault_it_cannot_take_says_why(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code = main(
        [
            "compare",
            "--backends",
            "memory",
            "--nemesis",
            "none,pause",
            "--workload",
            "mutex,lease-expiry",
            "--time-limit",
            "3",  # long enough that every op kind succeeds (valid is earned: docs/checkers.md)
            "--seed",
            "7",
            "--store",
            str(store),
        ]
    )
    assert code == 3  # the refused cells are not valid, so the matrix as a whole is not
    directory = compare_dir(store)
    summary = json.loads((directory / "compare.json").read_text())
    cells = {(c["workload"], c["fault"]): c for c in summary["cells"]}
    assert set(cells) == {
        ("mutex", "none"),
        ("mutex", "pause"),
        ("lease-expiry", "none"),
        ("lease-expiry", "pause"),
    }
    for workload in ("mutex", "lease-expiry"):
        ran = cells[(workload, "none")]
        assert ran["verdict"] == "valid"
        run_dir = Path(ran["run_dir"])
        history = (run_dir / "history.jsonl").read_text().splitlines()
        assert sum('"type": "ok"' in line or '"type":"ok"' in line for line in history) > 10
        assert (run_dir / "report.html").is_file()
        refused = cells[(workload, "pause")]
        assert refused["verdict"] is None
        assert refused["run_dir"] is None
        assert "no server to pause" in refused["reason"]
    page = (directory / "compare.html").read_text()
    assert (
        "not run: memory runs inside the bench (runtime none): there is no server to pause" in page
    )
    assert page.count("report.html") >= 2  # each run's verdict links to its report
    assert "ok ops/s" in page
    assert "unaware median" in page
    # every link of the page, and of the store's copy of the newest page, leads to a report
    for base, text in ((directory, page), (store, (store / "compare.html").read_text())):
        links = re.findall(r'href="([^"]+report\.html)"', text)
        assert len(links) == 2
        assert all((base / link).is_file() for link in links), links


def test_the_same_seed_gives_every_backend_the_same_cell_tests(tmp_path: Path) -> None:
    """The schedule is data in each cell's test file: it depends on fault, time and seed only."""
    spec = MatrixSpec(("reference", "memory"), ("mutex",), ("none",), time_limit=9, seed=5)
    plan = plan_matrix(spec, tmp_path / "plan")
    nemeses = [
        yaml.safe_load(cell.test_file.read_text())["nemesis"]
        for cell in plan.cells
        if cell.test_file is not None
    ]
    assert nemeses == [[], []]
    spec = MatrixSpec(("reference",), ("mutex", "lease-expiry"), ("pause",), time_limit=9, seed=5)
    plan = plan_matrix(spec, tmp_path / "plan2")
    planned = [yaml.safe_load(c.test_file.read_text()) for c in plan.cells if c.test_file]
    if planned:  # as root (netns) or not (local): the same entry and seed either way
        assert {p["seed"] for p in planned} == {5}
        assert len({json.dumps(p["nemesis"]) for p in planned}) == 1


def test_a_valid_run_in_which_nothing_succeeded_is_unknown(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_results(run_dir, "valid", {}, notes={"ops": {"ok": 0, "info": 7}})
    outcome = read_outcome(Cell("zookeeper", "mutex", "pause"), run_dir, [])
    assert outcome.verdict == "unknown"
    assert outcome.reason == "no client operation succeeded: nothing was checked"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backends", "reference,nosuch"], "unknown backend 'nosuch'"),
        (["--nemesis", "pause,earthquake"], "unknown nemesis fault 'earthquake'"),
        (["--workload", "mutex,juggling"], "unknown workload 'juggling'"),
        (["--time-limit", "0"], "--time-limit must be positive"),
        (["--backends", " , "], "--backends: give at least one name"),
    ],
)
def test_bad_names_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    store = tmp_path / "store"
    code = main(["compare", "--store", str(store), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (store / "compare").exists() or not any((store / "compare").iterdir())


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(900)  # four cells, two of them lockd on five netns nodes
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_reference_on_a_netns_cluster_and_memory_in_one_matrix(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code = main(
        [
            "compare",
            "--backends",
            "reference,memory",
            "--nemesis",
            "none,pause",
            "--workload",
            "mutex",
            "--time-limit",
            "8",
            "--seed",
            "3",
            "--concurrency",
            "4",
            "--store",
            str(store),
            "--prefix",
            "lbz",
            "--subnet",
            "10.77.9.0/24",
        ]
    )
    directory = compare_dir(store)
    summary = json.loads((directory / "compare.json").read_text())
    cells = {(c["backend"], c["fault"]): c for c in summary["cells"]}
    assert cells[("reference", "none")]["verdict"] == "valid", cells
    assert cells[("reference", "pause")]["verdict"] == "valid", cells
    assert cells[("memory", "none")]["verdict"] == "valid", cells
    assert cells[("memory", "pause")]["verdict"] is None
    assert code == 3
    nemesis = (Path(cells[("reference", "pause")]["run_dir"]) / "nemesis.log").read_text()
    assert "start-pause" in nemesis
    page = (directory / "compare.html").read_text()
    assert page.count("verdict-valid") >= 3
    # the matrix took its cluster down
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "lbz-" not in namespaces
