"""A leaderless service (Redlock's independent Redis servers) is never waited on for a leader.

Before ``elects_leader`` the runner polled ``leader()`` for ``recovery_bound`` seconds before the
clients started and again after healing; Redlock answers None for ever, so every run lost two
whole bounds (the compare matrix's 240 s each) doing nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.backends.redis import RedisBackend
from bench.backends.redlock import RedlockBackend
from bench.backends.reference import ReferenceBackend
from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.history import read_history
from lockbench.protocols import elects_leader, fencing_tokens
from tests.bench.backends.redis_cluster import local_redlock_test, skip_without_redis

RECOVERY_BOUND_S = 120.0


def test_redis_and_redlock_say_they_elect_no_leader_and_only_redlock_lacks_tokens() -> None:
    assert not elects_leader(RedlockBackend())
    assert not elects_leader(RedisBackend())
    assert elects_leader(ReferenceBackend())
    assert not fencing_tokens(RedlockBackend())
    assert fencing_tokens(RedisBackend())
    assert fencing_tokens(ReferenceBackend())


@pytest.mark.process
@pytest.mark.timeout(120)
def test_a_redlock_run_does_not_wait_for_a_leader(tmp_path: Path) -> None:
    skip_without_redis()
    test_file = local_redlock_test(
        tmp_path,
        "redlock-leaderless",
        1700,
        time_limit=3,
        ttl=3,
        recovery_bound=RECOVERY_BOUND_S,
    )
    started = time.monotonic()
    outcome = run_test(load_test_config(test_file), RunOptions(store=tmp_path / "store"))
    took = time.monotonic() - started
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert outcome.exit_code == 0, results
    # one wait for a leader alone would have taken the whole bound
    assert took < RECOVERY_BOUND_S, f"the run took {took:.0f} s"
    ops = read_history(outcome.run_dir / "history.jsonl")
    assert not [op for op in ops if op.f == "leader"], "no leader observer for a leaderless service"
    assert sum(1 for op in ops if op.f == "acquire" and op.type == "ok") >= 5
