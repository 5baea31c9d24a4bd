"""The store: one directory per run, ``store/<test-name>/<YYYYmmddTHHMMSS>/``, and ``store/latest``.

Layout (docs/history.md, docs/running.md): test.yaml (the resolved test), history.jsonl,
results.json, report.html, resource.log, nemesis.log, bench.log and nodes/<node>/*.log.
``write_results`` is shared with ``lockbench check RUN_DIR``, so both write the same file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.protocols import CheckResult, Verdict

TEST_FILE = "test.yaml"
HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
RESOURCE_LOG = "resource.log"
NEMESIS_LOG = "nemesis.log"
BENCH_LOG = "bench.log"
NODES_DIR = "nodes"
LATEST_LINK = "latest"


def create_run_dir(store: Path, test_name: str) -> Path:
    """Make a fresh run directory (a suffix keeps two runs in the same second apart)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    parent = store / test_name
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / NODES_DIR).mkdir()
        update_latest(store, run_dir)
        return run_dir
    raise FileExistsError(f"{parent}: could not create a fresh run directory for {stamp}")


def update_latest(store: Path, run_dir: Path) -> None:
    """Point ``store/latest`` at ``run_dir`` atomically (relative link, so the store can move)."""
    link = store / LATEST_LINK
    tmp = store / f".{LATEST_LINK}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.relative_to(store))
    os.replace(tmp, link)


def write_test_file(run_dir: Path, data: Mapping[str, Any]) -> Path:
    path = run_dir / TEST_FILE
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def write_results(
    run_dir: Path,
    verdict: Verdict,
    results: Mapping[str, CheckResult],
    *,
    errors: Sequence[str] = (),
    notes: Mapping[str, Any] | None = None,
) -> Path:
    """Write results.json (format in docs/history.md) atomically; returns its path.

    ``errors`` are problems around the run that did not stop the analysis (a teardown that
    failed, a fault that could not be healed); ``notes`` are facts about the run (interrupted,
    ops counts). Both are extra keys; readers of the documented keys are unaffected.
    """
    data: dict[str, Any] = {
        "verdict": verdict,
        "checkers": {name: result.to_json() for name, result in results.items()},
    }
    if errors:
        data["errors"] = list(errors)
    if notes:
        data["run"] = dict(notes)
    path = run_dir / RESULTS_FILE
    tmp = run_dir / f".{RESULTS_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
