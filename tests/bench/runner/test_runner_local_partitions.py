"""The local runtime partitions through its link proxy, so the runner plans and runs partitions.

Ports: lockd on 24500-24620 (offset 17500, step 10), the resource on 24900: the integration
suite's range.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.runner.config import DEFAULT_TEST_FILE, load_test_config, planned_cluster_facts
from bench.runner.test_run import RunOptions, run_test
from lockbench.history import read_history
from tests.bench.runner.runner_support import write_test_file


def test_the_default_test_keeps_its_partitions_on_the_local_runtime() -> None:
    config = load_test_config(DEFAULT_TEST_FILE, {"runtime": "local"})
    assert [spec["fault"] for spec in config.nemesis] == ["partition", "kill"]
    facts = planned_cluster_facts(config)
    assert facts.link_proxy
    assert facts.runtime == "local"
    assert set(facts.addresses.values()) == {"127.0.0.1"}


def test_only_the_local_runtime_plans_a_link_proxy(tmp_path: Path) -> None:
    path = write_test_file(tmp_path, backend="reference", runtime="netns")
    assert not planned_cluster_facts(load_test_config(path)).link_proxy


@pytest.mark.process
@pytest.mark.slow
def test_a_local_run_with_a_partition_blocks_links_and_heals_them(tmp_path: Path) -> None:
    path = write_test_file(
        tmp_path,
        name="lbi-local-partition",
        runtime="local",
        port_offset=17500,
        cluster_dir=str(tmp_path / "cluster"),
        backend="reference",
        backend_options={"tick_ms": 100},
        workload_options={"locks": 2, "hold": 0.02, "think": 0.02, "acquire_timeout": 2},
        nemesis=[{"fault": "partition", "shape": "isolate-leader", "schedule": {"at": [[3, 6]]}}],
        time_limit=10,
        concurrency=4,
        op_timeout=3,
        ttl=3,
        recovery_bound=20,
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    history = read_history(outcome.run_dir / "history.jsonl")
    started = [op for op in history if op.f == "start-partition" and op.type == "info"]
    assert started, results
    assert isinstance(started[0].value, dict)
    blocked = [link for link, fault in started[0].value["links"].items() if fault["blocked"]]
    assert len(blocked) == 8, started[0].value  # the leader's 4 links, both ways
    assert any(op.f == "stop-partition" and op.type == "info" for op in history)
    assert outcome.exit_code == 0, results
    assert not (tmp_path / "cluster" / "nodes").exists()  # the runner took its cluster down
    # clients closed after faults leave no reader task behind (asyncio logs those as errors)
    assert "Task was destroyed" not in (outcome.run_dir / "bench.log").read_text()
