"""A report reads whatever a run directory holds and says what is missing, never raising."""

from __future__ import annotations

import json
from pathlib import Path

from lockbench.history import read_history
from reports.run_data import describe_component, load_run
from tests.reports.report_support import SampleStore, write_history


def test_a_complete_run_has_no_problems(sample_store: SampleStore) -> None:
    data = load_run(sample_store.invalid)
    assert data.problems == []
    assert data.verdict == "invalid"
    assert {r.checker for r in data.results} >= {"mutual-exclusion", "fencing", "linearizable"}
    assert len(data.ops) == len(read_history(sample_store.invalid / "history.jsonl"))
    assert data.seed == 7
    assert data.node_logs
    assert all(p.startswith("nodes/") for p in data.node_logs)


def test_a_truncated_history_is_read_to_the_damage_and_reported(
    sample_store: SampleStore,
) -> None:
    data = load_run(sample_store.damaged)
    text = " ".join(data.problems)
    assert "unreadable line" in text
    assert "truncated" in text
    assert "results.json is missing" in text
    assert data.ops, "the readable prefix is kept"
    assert data.verdict is None


def test_a_run_without_history_still_loads(sample_store: SampleStore) -> None:
    data = load_run(sample_store.no_history)
    assert not data.has_history
    assert data.ops == []
    assert data.calls == []
    assert any("history.jsonl is missing" in p for p in data.problems)


def test_unmatched_completions_are_dropped_not_fatal(tmp_path: Path) -> None:
    write_history(
        tmp_path,
        [
            {"process": 0, "type": "ok", "f": "acquire", "key": "a", "value": 1},
            {"process": 0, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 0, "type": "invoke", "f": "release", "key": "a"},
            {"process": 0, "type": "ok", "f": "release", "key": "a"},
        ],
    )
    data = load_run(tmp_path)
    assert any("without an invocation" in p or "still pending" in p for p in data.problems)
    assert [c.invoke.f for c in data.calls] == ["acquire", "release"]
    assert data.calls[0].completion is None


def test_garbage_results_and_config_become_problems(tmp_path: Path) -> None:
    write_history(tmp_path, [])
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "test.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    data = load_run(tmp_path)
    text = " ".join(data.problems)
    assert "results.json does not parse" in text
    assert "test.yaml is not a mapping" in text


def test_a_checker_entry_that_is_malformed_is_named(tmp_path: Path) -> None:
    write_history(tmp_path, [])
    results = {
        "verdict": "invalid",
        "checkers": {"good": {"verdict": "valid"}, "bad": {"verdict": "maybe"}},
    }
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    data = load_run(tmp_path)
    assert [r.checker for r in data.results] == ["good"]
    assert any("'bad'" in p for p in data.problems)


def test_components_are_named_from_every_test_file_shape() -> None:
    assert describe_component("reference") == "reference"
    assert describe_component({"name": "fenced-counter", "locks": 2}) == "fenced-counter"
    nemesis = [{"fault": "partition", "shape": "majorities-ring"}, {"fault": "kill"}]
    assert describe_component(nemesis) == "partition+kill"
    assert describe_component({"faults": ["partition", "clock"]}) == "partition+clock"
    assert describe_component([]) == "none"
    assert describe_component(None) == "none"
