"""A killed bench leaves a valid history prefix; Ctrl-C and SIGTERM stop, check and exit."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lockbench.history import pair_calls, read_history
from tests.bench.runner.runner_support import write_test_file

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

STARTUP_BOUND_S = 30.0


def start_bench(tmp_path: Path, **keys: Any) -> tuple[subprocess.Popen[str], Path]:
    path = write_test_file(tmp_path, time_limit=60, **keys)
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, store


def wait_for_ops(proc: subprocess.Popen[str], store: Path, count: int) -> Path:
    """Wait until the running bench has written ``count`` history lines; returns the run dir."""
    deadline = time.monotonic() + STARTUP_BOUND_S
    while time.monotonic() < deadline:
        history = store / "latest" / "history.jsonl"
        if history.exists() and history.read_text().count("\n") >= count:
            return (store / "latest").resolve()
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"bench exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the bench wrote no history within the startup bound")


def test_a_bench_killed_mid_run_leaves_a_valid_history_prefix(tmp_path: Path) -> None:
    proc, store = start_bench(tmp_path)
    try:
        run_dir = wait_for_ops(proc, store, 200)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    history = read_history(run_dir / "history.jsonl")  # strict: a torn line would raise
    assert len(history) >= 200
    assert [op.index for op in history] == list(range(len(history)))
    assert all(a.time <= b.time for a, b in itertools.pairwise(history))
    calls = pair_calls(history)  # a completion never precedes its invocation
    assert sum(c.completion is None for c in calls) <= 6  # at most one open op per process
    # killed: the run never got to checking; results.json still says so (unfinished, unknown)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "unknown"
    assert results["run"]["finished"] is False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_which_is_still_checked_and_stored(
    tmp_path: Path, sig: signal.Signals
) -> None:
    proc, store = start_bench(tmp_path)
    try:
        run_dir = wait_for_ops(proc, store, 200)
        started = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert stopped_in < 30  # not the 60 s time limit
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "valid"
    assert results["run"]["interrupted"] is True
    calls = pair_calls(read_history(run_dir / "history.jsonl"))
    assert all(c.completion is not None for c in calls)  # every op got its completion
    assert "interrupted" in out
    assert sig.name in (run_dir / "bench.log").read_text()
