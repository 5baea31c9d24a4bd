"""``lockbench validate``'s cases and table, without running lockd (the runs themselves are
measured by ``lockbench validate``; .ci/run runs two switches for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.runner.run_series import RunRecord
from bench.runner.validation import (
    CASES,
    Case,
    all_as_expected,
    build_cells,
    check_cases,
    format_table,
    select_cases,
    table_rows,
)
from lockbench.errors import ConfigError
from reference_impl.server.config import UNSAFE_SWITCHES


def test_every_lockd_switch_has_a_case_and_a_new_one_cannot_be_forgotten() -> None:
    assert {case.switch for case in CASES} == set(UNSAFE_SWITCHES)
    check_cases()
    with pytest.raises(ConfigError, match="no case for \\['no-fsync'\\]"):
        check_cases([c for c in CASES if c.switch != "no-fsync"])
    with pytest.raises(ConfigError, match="unknown switch"):
        select_cases(["grant-befor-commit"])


def test_each_bug_runs_per_seed_and_shared_controls_run_once_per_seed() -> None:
    cells = build_cells(CASES, [1, 2, 3], time_limit=20, settings={"runtime": "netns"})
    bugs = [c for c in cells if c.expected == "invalid"]
    controls = [c for c in cells if c.expected == "valid"]
    assert len(bugs) == 3 * len(CASES)
    assert len(controls) == 3 * len({case.control_key for case in CASES})
    for cell in bugs:
        assert list(cell.config.backend_options["unsafe"]) == [cell.labels["bug"]]
        assert cell.config.time_limit == 20
        assert cell.config.nemesis
    assert all(not c.config.backend_options["unsafe"] for c in controls)


def _record(case: Case, bug: bool, seed: int, verdict: str | None) -> RunRecord:
    cells = build_cells([case], [seed], time_limit=10, settings={"runtime": "netns"})
    cell = next(c for c in cells if (c.expected == "invalid") == bug)
    caught = ("fencing",) if verdict == "invalid" else ()
    return RunRecord(cell, verdict, 1, Path("/x"), 30.0, caught_by=caught, first_anomaly_s=4.5)  # type: ignore[arg-type]


def test_the_table_passes_only_when_every_bug_is_caught_and_every_control_valid() -> None:
    case = next(c for c in CASES if c.switch == "reuse-tokens")
    good = [_record(case, True, s, "invalid") for s in (1, 2)]
    good += [_record(case, False, s, "valid") for s in (1, 2)]
    rows = table_rows([case], good)
    assert all_as_expected(rows)
    table = format_table(rows, [case])
    assert "| `reuse-tokens` | mutex | kill -9 and restart of every node | invalid | " in table
    assert "invalid / invalid | fencing | 4.5 s, 4.5 s | ok |" in table
    missed = [*good[:1], _record(case, True, 2, "valid"), *good[2:]]
    assert not all_as_expected(table_rows([case], missed))
    false_positive = [*good[:3], _record(case, False, 2, "invalid")]
    rows = table_rows([case], false_positive)
    assert not all_as_expected(rows)
    assert "NOT AS EXPECTED" in format_table(rows, [case])
