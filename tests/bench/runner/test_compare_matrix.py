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
from bench.runner.matrix import (
    Cell,
    CellOutcome,
    MatrixSpec,
    parse_resource_modes,
    plan_matrix,
    read_outcome,
    run_matrix,
    write_summary,
)
from lockbench.run_dir import write_results
from reports.compare import render_compare


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
            "lbx",
            "--subnet",
            "10.77.14.0/24",
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
    assert "lbx-" not in namespaces


def test_a_backend_without_fencing_tokens_runs_unfenced_and_its_row_says_so(
    tmp_path: Path,
) -> None:
    spec = MatrixSpec(("etcd", "redlock"), ("lease-expiry",), ("none",), time_limit=9)
    plan = plan_matrix(spec, tmp_path / "plan")
    rows = {(row.backend, row.resource_mode): row.note for row in plan.rows}
    assert rows == {
        ("etcd", "fenced"): "its grants carry a fencing token",
        ("redlock", "unfenced"): "it has no fencing token",
    }
    modes = {
        (c.cell.backend, yaml.safe_load(c.test_file.read_text())["resource_mode"])
        for c in plan.cells
        if c.test_file is not None
    }
    assert modes == {("etcd", "fenced"), ("redlock", "unfenced")}


def test_the_resource_mode_is_set_per_backend(tmp_path: Path) -> None:
    mode, per_backend = parse_resource_modes("unfenced,etcd=both", ("etcd", "redlock"))
    spec = MatrixSpec(
        ("etcd", "redlock"),
        ("mutex",),
        ("none",),
        resource_mode=mode,
        resource_modes=per_backend,
    )
    plan = plan_matrix(spec, tmp_path / "plan")
    assert [(r.backend, r.resource_mode) for r in plan.rows] == [
        ("etcd", "fenced"),
        ("etcd", "unfenced"),
        ("redlock", "unfenced"),
    ]
    names = [c.cell.name for c in plan.cells]
    assert names == ["etcd-mutex-none", "etcd-mutex-none-unfenced", "redlock-mutex-none-unfenced"]
    # redlock fenced on request: allowed, and its row warns what that means
    plan = plan_matrix(
        MatrixSpec(("redlock",), ("mutex",), ("none",), resource_mode="fenced"), tmp_path / "p2"
    )
    assert "no fencing token, so the resource refuses every access" in plan.rows[0].note


def test_the_page_shows_each_rows_resource_mode(tmp_path: Path) -> None:
    spec = MatrixSpec(("etcd", "redlock"), ("mutex",), ("clock",), time_limit=9)
    plan = plan_matrix(spec, tmp_path)
    outcomes = [CellOutcome(c.cell, None, None, 0, c.refusal or "not run yet") for c in plan.cells]
    write_summary(tmp_path, spec, outcomes, plan.rows)
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert [c["resource_mode"] for c in summary["cells"]] == ["fenced", "unfenced"]
    page = render_compare(tmp_path).read_text()
    assert "fenced resource: its grants carry a fencing token" in page
    assert "unfenced resource: it has no fencing token" in page
    # etcd's Go server reads the clock through the vDSO: refused, with the reason, never valid
    assert "not run: clock fault cannot reach etcd" in page
    assert '<span class="verdict-valid">' not in page


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--resource-mode", "half"], "--resource-mode: 'half': the mode must be one of"),
        (["--resource-mode", "etcd=both"], "'etcd' is not one of --backends (reference)"),
    ],
)
def test_bad_resource_modes_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(["compare", "--store", str(tmp_path / "store"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.process  # a local cluster's nodes run the binary check
@pytest.mark.timeout(120)
def test_a_missing_server_binary_cell_names_the_package_and_is_never_valid(
    tmp_path: Path,
) -> None:
    backend = "tests.bench.runner.missing_binary_backend:MissingBinaryRedlockBackend"
    spec = MatrixSpec((backend,), ("mutex",), ("none",), time_limit=2, runtime="local")
    plan = plan_matrix(spec, tmp_path / "plan")
    (outcome,) = run_matrix(plan, tmp_path / "store")
    assert outcome.verdict is None
    assert outcome.reason is not None
    assert "server binary missing" in outcome.reason
    assert "apt-get install redis-server" in outcome.reason
    history = outcome.run_dir / "history.jsonl" if outcome.run_dir else None
    assert history is None or not history.exists() or '"ok"' not in history.read_text()
