"""Clock faults through the whole runner on netns: refused against a Go server (etcd) before
anything starts; against lockd, armed, verified on every server's own clock, and absent (no
preload) from a run without a clock fault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.errors import EXIT_USAGE
from lockbench.history import read_history
from tests.bench.runner.runner_support import write_test_file

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd (etcd-server) not installed"),
]


def test_a_clock_fault_on_etcd_is_refused_with_the_reason_before_anything_starts(
    tmp_path: Path,
) -> None:
    path = write_test_file(
        tmp_path,
        name="lbc-etcd-clock",
        runtime="netns",
        netns_prefix="lbw",
        subnet="10.77.7.0/24",
        cluster_dir=str(tmp_path / "cluster"),
        backend="tests.bench.runner.etcd_servers:EtcdServers",
        nemesis=[{"fault": "clock", "mode": "bump", "offset_ms": 500, "target": "all"}],
        time_limit=5,
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    assert outcome.exit_code == EXIT_USAGE, outcome.errors
    assert outcome.verdict == "unknown"  # a refused run is never valid (issue 15)
    reason = (
        "clock fault cannot reach etcd on this runtime (netns): /usr/bin/etcd on n1 is a Go "
        "program (.go.buildinfo, .gopclntab, .note.go.buildid): Go reads the clock through "
        "the vDSO, not libc"
    )
    assert any(reason in error for error in outcome.errors), outcome.errors
    # nothing was armed or started: no etcd log fetched from any node, no etcd process
    assert not list(outcome.run_dir.glob("nodes/*/etcd.log"))
    assert "arming" not in (outcome.run_dir / "bench.log").read_text()
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "--name=n1 --data-dir" not in processes
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "lbc-" not in namespaces


def _lockd_start_lines(run_dir: Path) -> list[str]:
    logs = sorted(run_dir.glob("nodes/*/lockd.log"))
    assert {p.parent.name for p in logs} == {"n1", "n2", "n3", "n4", "n5"}, logs
    return [
        line
        for log in logs
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("=== start")
    ]


@pytest.mark.slow
def test_a_clock_bump_on_lockd_reaches_every_server_and_a_plain_run_has_no_preload(
    tmp_path: Path,
) -> None:
    common: dict[str, object] = {
        "runtime": "netns",
        "netns_prefix": "lbw",
        "subnet": "10.77.7.0/24",
        "backend": "reference",
        "backend_options": {"tick_ms": 100},
        "workload_options": {"locks": 2, "hold": 0.02, "think": 0.02, "acquire_timeout": 2},
        "time_limit": 10,
        "concurrency": 4,
        "op_timeout": 3,
        "ttl": 5,
        "recovery_bound": 20,
    }
    bump = {"fault": "clock", "mode": "bump", "offset_ms": 700, "target": "all"}
    path = write_test_file(
        tmp_path,
        name="lbc-lockd-clock",
        cluster_dir=str(tmp_path / "cluster-clock"),
        nemesis=[{**bump, "schedule": {"at": [[3, 7]]}}],
        **common,
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert outcome.exit_code == 0, results
    assert results["checkers"]["fault-reach"]["verdict"] == "valid"
    history = read_history(outcome.run_dir / "history.jsonl")
    clocks = [op.value for op in history if op.process == "nemesis" and op.f == "clock"]
    bumped = [c for c in clocks if all(abs(v - 700) < 50 for v in c["offsets_ms"].values())]
    assert bumped, clocks
    for node, reach in bumped[0]["reach"].items():
        assert reach["by"] == "server", (node, reach)
        assert reach["reached"] is True, (node, reach)
        assert abs(reach["seen_ms"] - 700) < reach["tolerance_ms"], (node, reach)
    assert all(
        "wall clock: lockbench clock library" in line
        for line in _lockd_start_lines(outcome.run_dir)
    )

    plain = write_test_file(
        tmp_path,
        name="lbc-lockd-plain",
        cluster_dir=str(tmp_path / "cluster-plain"),
        nemesis=[],
        **common,
    )
    outcome = run_test(load_test_config(plain), RunOptions(store=tmp_path / "store"))
    assert outcome.exit_code == 0, outcome.errors
    lines = _lockd_start_lines(outcome.run_dir)
    assert lines
    assert not any("clock library" in line for line in lines), lines
