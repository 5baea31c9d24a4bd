"""Reading a run directory for a report: whatever is there, and a list of what is not.

A report is most needed when a run went wrong, so nothing here raises on a damaged store
directory: a missing or truncated history, a results.json that does not parse, a test.yaml that is
not a mapping each become a sentence in ``RunData.problems`` and the report shows the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lockbench.history import (
    Call,
    Op,
    PairingError,
    pair_calls,
    pair_calls_lenient,
    read_history_lenient,
)
from lockbench.protocols import CheckResult, Verdict
from lockbench.run_dir import (
    HISTORY_FILE,
    RESULTS_FILE,
    TEST_FILE,
    RunDirProblem,
    list_node_logs,
    list_run_files,
    read_results,
    read_test_data,
    run_time,
)


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a report shows about one run, as read from its directory."""

    run_dir: Path
    test: Mapping[str, Any]
    ops: Sequence[Op]
    calls: Sequence[Call]
    results: Sequence[CheckResult]
    verdict: Verdict | None
    problems: Sequence[str] = ()
    node_logs: Sequence[str] = ()
    other_files: Sequence[str] = ()
    has_history: bool = False
    # What the report's sections compute once per page and share (reports/render.py).
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        name = self.test.get("name")
        return str(name) if name else self.run_dir.parent.name

    @property
    def started(self) -> datetime | None:
        return run_time(self.run_dir)

    @property
    def duration_s(self) -> float:
        return max((op.time for op in self.ops), default=0) / 1e9

    @property
    def seed(self) -> Any:
        return self.test.get("seed")


def describe_component(value: Any) -> str:
    """A one-line name for a test.yaml entry that may be a string, a mapping or a list."""
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("name", "fault", "type", "kind"):
            if key in value:
                return str(value[key])
        faults = value.get("faults")
        if isinstance(faults, Sequence) and not isinstance(faults, str):
            return "+".join(str(f) for f in faults)
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, Sequence):
        return "+".join(describe_component(v) for v in value) or "none"
    return str(value)


def load_test_config(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = read_test_data(run_dir)
    except RunDirProblem as exc:
        problems.append(str(exc))
        return {}
    if data is None:
        problems.append(f"{TEST_FILE} is missing: the test configuration and seed are unknown.")
        return {}
    return data


def load_results(run_dir: Path, problems: list[str]) -> tuple[list[CheckResult], Verdict | None]:
    try:
        stored = read_results(run_dir)
    except RunDirProblem as exc:
        problems.append(str(exc))
        return [], None
    if stored is None:
        problems.append(
            f"{RESULTS_FILE} is missing: this run was not checked "
            f"(run `lockbench check {run_dir}` to check it)."
        )
        return [], None
    problems.extend(stored.problems)
    return list(stored.results), stored.verdict


def load_history(run_dir: Path, problems: list[str]) -> tuple[list[Op], list[Call], bool]:
    path = run_dir / HISTORY_FILE
    if not path.exists():
        problems.append(
            f"{HISTORY_FILE} is missing: there are no operations to show "
            "(the run may have failed before its first operation)."
        )
        return [], [], False
    ops, read_problems = read_history_lenient(path)
    if read_problems:
        lines = ", ".join(str(p.line) for p in read_problems[:5])
        more = f" and {len(read_problems) - 5} more" if len(read_problems) > 5 else ""
        problems.append(
            f"{HISTORY_FILE}: skipped {len(read_problems)} unreadable line(s) (line {lines}{more}; "
            f"first: {read_problems[0].reason}). The history looks truncated: the report shows "
            f"the {len(ops)} operations that could be read."
        )
    if not ops and not read_problems:
        problems.append(f"{HISTORY_FILE} is empty.")
    try:
        calls = pair_calls(ops)
    except PairingError as exc:
        problems.append(f"{HISTORY_FILE}: {exc}; unmatched records are left out of the timeline.")
        calls = pair_calls_lenient(ops)
    return ops, calls, True


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; never raises for missing or damaged files (see ``problems``)."""
    problems: list[str] = []
    if not run_dir.is_dir():
        problems.append(f"{run_dir} is not a directory.")
    test = load_test_config(run_dir, problems)
    ops, calls, has_history = load_history(run_dir, problems)
    results, verdict = load_results(run_dir, problems)
    node_logs = list_node_logs(run_dir)
    present = list_run_files(run_dir)
    return RunData(
        run_dir=run_dir,
        test=test,
        ops=ops,
        calls=calls,
        results=results,
        verdict=verdict,
        problems=problems,
        node_logs=node_logs,
        other_files=present,
        has_history=has_history,
    )


def fields_of(data: RunData) -> dict[str, str]:
    """The summary fields the index lists and the report's header shows."""
    started = data.started
    return {
        "name": data.name,
        "time": started.strftime("%Y-%m-%d %H:%M:%S") if started else data.run_dir.name,
        "backend": describe_component(data.test.get("backend")),
        "workload": describe_component(data.test.get("workload")),
        "nemesis": describe_component(data.test.get("nemesis")),
        "verdict": data.verdict or "unchecked",
    }


__all__ = [
    "RunData",
    "describe_component",
    "fields_of",
    "load_run",
]
