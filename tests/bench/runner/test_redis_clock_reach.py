"""The clock fault's reach on Redis is read from the servers themselves (``TIME``), as on lockd.

Issue 17's rule: after each clock action the nemesis reads the clock the server sees where the
backend can tell. Redis can (``RedisServers.server_clock``), so a bump must show in every
server's own ``TIME``, not only in the library being mapped into its process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.history import read_history
from tests.bench.backends.redis_cluster import local_redlock_test, skip_without_redis

OFFSET_MS = 700


@pytest.mark.process
@pytest.mark.timeout(180)
def test_a_clock_bump_on_redlock_is_seen_in_every_servers_own_time(tmp_path: Path) -> None:
    skip_without_redis()
    # a bump of all five servers, below the TTL: it must be seen, not break the lock
    bump = {"fault": "clock", "mode": "bump", "offset_ms": OFFSET_MS, "target": "all"}
    test_file = local_redlock_test(
        tmp_path,
        "redlock-clock-reach",
        1800,
        nemesis=[{**bump, "schedule": {"at": [[1, 3]]}}],
        time_limit=5,
        ttl=5,
    )
    outcome = run_test(load_test_config(test_file), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert outcome.exit_code == 0, results
    assert results["checkers"]["fault-reach"]["verdict"] == "valid"
    clocks = [
        op.value
        for op in read_history(outcome.run_dir / "history.jsonl")
        if op.process == "nemesis" and op.f == "clock"
    ]
    bumped = [c for c in clocks if all(abs(v - OFFSET_MS) < 50 for v in c["offsets_ms"].values())]
    assert bumped, clocks
    assert len(bumped[0]["reach"]) == 5
    for node, reach in bumped[0]["reach"].items():
        assert reach["by"] == "server", (node, reach)  # Redis TIME, not /proc/<pid>/maps
        assert reach["reached"] is True, (node, reach)
        assert abs(reach["seen_ms"] - OFFSET_MS) < reach["tolerance_ms"], (node, reach)
