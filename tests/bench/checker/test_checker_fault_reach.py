"""A run is not valid on the strength of a clock fault that did not reach a server."""

from __future__ import annotations

from typing import Any

from bench.checking import run_checkers
from lockbench.history import Op
from tests.bench.checker.checker_histories import history

LOCK = "lock/1"


def _run(reach_record: dict[str, Any]) -> list[Op]:
    return history(
        (0, "invoke", "acquire", LOCK, {"timeout": 1.0}),
        (0, "ok", "acquire", LOCK, 1, {"session": "s0"}),
        ("nemesis", "invoke", "start-clock", None, {"nemesis": 0, "nodes": ["n1", "n2"]}),
        ("nemesis", "info", "start-clock", None, {"nemesis": 0, "offsets_ms": {"n1": 500}}),
        ("nemesis", "info", "clock", None, reach_record),
        (0, "invoke", "release", LOCK, None),
        (0, "ok", "release", LOCK, None),
    )


def test_a_clock_fault_that_missed_a_server_makes_a_clean_run_unknown() -> None:
    record = {
        "offsets_ms": {"n1": 500.0, "n2": 0.0},
        "reach": {
            "n1": {"by": "server", "reached": False, "expected_ms": 500.0, "seen_ms": 1.0},
            "n2": {"by": "server", "reached": True, "expected_ms": 0.0, "seen_ms": 0.4},
        },
        "not_reached": ["n1"],
    }
    verdict, results = run_checkers(_run(record), ["mutual-exclusion"], {})
    assert results["mutual-exclusion"].verdict == "valid"
    assert verdict == "unknown"
    reach = results["fault-reach"]
    assert reach.verdict == "unknown"
    assert reach.reason == (
        "the clock fault did not reach the server on n1 (its server saw +1 ms, the offset was "
        "+500 ms)"
    )
    assert reach.anomalies[0].op_indices == (4,)


def test_a_clock_fault_that_reached_every_server_leaves_the_verdict_alone() -> None:
    record = {
        "offsets_ms": {"n1": 500.0},
        "reach": {"n1": {"by": "process", "reached": True, "expected_ms": 500.0}},
    }
    verdict, results = run_checkers(_run(record), ["mutual-exclusion"], {})
    assert verdict == "valid"
    assert results["fault-reach"].stats == {"clock_checks": 1, "not_reached": 0}


def test_a_history_without_clock_faults_is_not_checked_for_reach() -> None:
    ops = history(
        (0, "invoke", "acquire", LOCK, {"timeout": 1.0}),
        (0, "ok", "acquire", LOCK, 1, {"session": "s0"}),
    )
    verdict, results = run_checkers(ops, ["mutual-exclusion"], {})
    assert verdict == "valid"
    assert "fault-reach" not in results
