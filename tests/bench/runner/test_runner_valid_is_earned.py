"""A run that did not start, or never finished, is never valid, whichever command reads it.

The cases a new user found (issue 15): Ctrl-C during deploy reported ``valid``; a bench killed
with SIGKILL left a run that ``lockbench check`` turned into ``valid`` and ``lockbench serve``
listed as valid with no mark; a misspelt unsafe switch built and deployed a cluster before lockd
refused it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.runner.config import load_test_config
from lockbench.errors import ConfigError
from reports.index import render_index_html, summarize_run
from tests.bench.runner.runner_support import write_test_file
from tests.bench.runner.test_runner_signals import start_bench, wait_for_ops
from tests.support.waiting import wait_until

pytestmark = pytest.mark.process  # starts benches as processes (docs/development.md)
HERE = Path(__file__).parent


def lockbench(*args: str) -> int:
    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_a_misspelt_unsafe_switch_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = write_test_file(
        tmp_path,
        backend="reference",
        runtime="local",
        backend_options={"unsafe": ["grant-befor-commit"]},
    )
    with pytest.raises(ConfigError, match=r"unknown unsafe switch.*grant-befor-commit"):
        load_test_config(path)
    store = tmp_path / "store"
    assert lockbench("run", str(path), "--store", str(store)) == 2
    assert not store.exists()  # no run directory, no cluster, nothing deployed


def test_ctrl_c_during_deploy_is_unknown_never_valid(tmp_path: Path) -> None:
    path = write_test_file(tmp_path, backend="slow_deploy_backend:SlowDeployBackend")
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        log = store / "latest" / "bench.log"

        def deploying() -> bool:
            assert proc.poll() is None, proc.stderr
            return log.exists() and "deploying" in log.read_text()

        wait_until(deploying, timeout=30, what="the bench deploying", interval=0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err[-2000:]
    assert "verdict unknown (exit 3)" in out
    assert "valid" not in out.replace("unknown", "")
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "unknown"
    assert results["run"]["started"] is False
    assert results["run"]["interrupted"] is True
    assert "never started" in results["run"]["reason"]
    # a re-check cannot turn it valid either
    assert lockbench("check", str(run_dir)) == 3
    assert json.loads((run_dir / "results.json").read_text())["verdict"] == "unknown"


def test_a_killed_bench_is_marked_unfinished_and_no_command_calls_it_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, store = start_bench(tmp_path)
    try:
        run_dir = wait_for_ops(proc, store, 200)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "unknown"
    assert results["run"]["finished"] is False
    summary = summarize_run(store, run_dir)
    assert (summary.verdict, summary.status) == ("unknown", "unfinished")
    assert "unfinished" in render_index_html(store, live=True)
    # The prefix checks clean, but the run never finished: unknown, and stays so on disk.
    assert lockbench("check", str(run_dir)) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "unknown"
    assert "never finished" in document["reason"]
    assert all(
        result["verdict"] in ("valid", "unknown") for result in document["checkers"].values()
    )
    after = json.loads((run_dir / "results.json").read_text())
    assert after["verdict"] == "unknown"
    assert after["run"]["finished"] is False
    assert summarize_run(store, run_dir).status == "unfinished"


def test_a_finished_run_is_marked_finished(tmp_path: Path) -> None:
    path = write_test_file(tmp_path)
    store = tmp_path / "store"
    assert lockbench("run", str(path), "--store", str(store), "--no-progress") == 0
    run_dir = (store / "latest").resolve()
    notes = json.loads((run_dir / "results.json").read_text())["run"]
    assert notes["started"] is True
    assert notes["finished"] is True
    assert summarize_run(store, run_dir).status == ""
