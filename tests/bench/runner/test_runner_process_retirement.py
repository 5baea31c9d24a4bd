"""Jepsen's rule: after an unknown (info) outcome a process retires; id + concurrency follows."""

from __future__ import annotations

from collections import defaultdict

import pytest

from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.history import Op, pair_calls, read_history
from tests.bench.runner.runner_support import write_test_file

CONCURRENCY = 5


@pytest.fixture(scope="module")
def lossy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Op], int]:
    """One run of the memory backend losing 3% and withholding 2% of its replies."""
    tmp_path = tmp_path_factory.mktemp("lossy")
    path = write_test_file(
        tmp_path,
        concurrency=CONCURRENCY,
        time_limit=2.0,
        op_timeout=0.3,
        backend_options={"lost_replies": 0.03, "stuck_replies": 0.02, "seed": 5},
        workload_options={"locks": 3, "hold": 0.001, "think": 0.001, "acquire_timeout": 0.2},
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path, live_progress=False))
    return read_history(outcome.run_dir / "history.jsonl"), outcome.stats.retired


def test_unknown_outcomes_retire_the_process_and_a_fresh_id_takes_its_slot(
    lossy_run: tuple[list[Op], int],
) -> None:
    history, retired = lossy_run
    calls = pair_calls(history)
    by_process: dict[int, list[str]] = defaultdict(list)
    for call in calls:
        assert isinstance(call.process, int)
        assert call.completion is not None
        by_process[call.process].append(call.completion.type)
    infos = [c for c in calls if c.outcome == "info"]
    assert len(infos) >= 3
    assert retired == len(infos)
    errors = {
        c.completion.error.split(":")[0] for c in infos if c.completion and c.completion.error
    }
    assert {"Indeterminate", "timeout"} <= errors  # lost replies and withheld ones (per-op timeout)
    for process, outcomes in by_process.items():
        # an info is always the process's last op: it never invokes again
        assert "info" not in outcomes[:-1], (process, outcomes)
    for call in infos:
        successor = int(call.process) + CONCURRENCY
        assert call.completion is not None
        later = [op for op in history if op.process == successor]
        # the slot goes on with the successor id, which only starts after the retirement
        if later:
            assert later[0].index > call.completion.index
    slots = {int(p) % CONCURRENCY for p in by_process}
    assert slots == set(range(CONCURRENCY))
    assert max(int(p) for p in by_process) >= CONCURRENCY  # some slot really moved on


def test_definite_failures_do_not_retire_the_process(lossy_run: tuple[list[Op], int]) -> None:
    history, _ = lossy_run
    calls = pair_calls(history)
    failed = [c for c in calls if c.outcome == "fail"]
    assert failed, "acquire timeouts in the queue should have failed some acquires"
    continued = [
        c
        for c in failed
        if any(o.process == c.process and o.index > c.invoke.index + 1 for o in history)
    ]
    assert continued, "a process that saw fail must carry on with the same id"
