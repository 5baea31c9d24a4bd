"""Reading a run directory for a report: whatever is there, and a list of what is not.

A report is most needed when a run went wrong, so nothing here raises on a damaged store
directory: a missing or truncated history, a results.json that does not parse, a test.yaml that is
not a mapping each become a sentence in ``RunData.problems`` and the report shows the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.history import Call, Op, PairingError, pair_calls, read_history_lenient
from bench.protocols import Anomaly, CheckResult, Verdict

HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"
TEST_FILE = "test.yaml"
REPORT_FILE = "report.html"
TEXT_LOGS: tuple[str, ...] = ("nemesis.log", "bench.log")
RUN_DIR_TIME_FORMAT = "%Y%m%dT%H%M%S"
VERDICTS: frozenset[str] = frozenset({"valid", "invalid", "unknown"})


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


def run_time(run_dir: Path) -> datetime | None:
    """The run's start from its directory name (``YYYYmmddTHHMMSS``), if it has that form."""
    try:
        return datetime.strptime(run_dir.name, RUN_DIR_TIME_FORMAT)
    except ValueError:
        return None


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
    path = run_dir / TEST_FILE
    if not path.exists():
        problems.append(f"{TEST_FILE} is missing: the test configuration and seed are unknown.")
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        problems.append(f"{TEST_FILE} is not valid YAML ({exc.__class__.__name__}).")
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"{TEST_FILE} is not a mapping of settings.")
        return {}
    return loaded


def load_results(run_dir: Path, problems: list[str]) -> tuple[list[CheckResult], Verdict | None]:
    path = run_dir / RESULTS_FILE
    if not path.exists():
        problems.append(
            f"{RESULTS_FILE} is missing: this run was not checked "
            f"(run `lockbench check {run_dir}` to check it)."
        )
        return [], None
    try:
        raw = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        problems.append(f"{RESULTS_FILE} does not parse ({exc.msg} at line {exc.lineno}).")
        return [], None
    if not isinstance(raw, dict):
        problems.append(f"{RESULTS_FILE} is not a JSON object.")
        return [], None
    results: list[CheckResult] = []
    checkers = raw.get("checkers")
    if isinstance(checkers, dict):
        for name, entry in checkers.items():
            try:
                results.append(_check_result(str(name), entry))
            except (TypeError, ValueError, KeyError) as exc:
                problems.append(f"{RESULTS_FILE}: checker {name!r} could not be read ({exc}).")
    verdict = raw.get("verdict")
    return results, verdict if verdict in VERDICTS else None


def _check_result(name: str, entry: Any) -> CheckResult:
    if not isinstance(entry, dict):
        raise TypeError("not an object")
    verdict = entry.get("verdict", "unknown")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}")
    anomalies = tuple(_anomaly(a) for a in entry.get("anomalies") or ())
    window = entry.get("window")
    stats = entry.get("stats")
    return CheckResult(
        checker=str(entry.get("checker") or name),
        verdict=verdict,
        anomalies=anomalies,
        stats=stats if isinstance(stats, dict) else {},
        window=(int(window[0]), int(window[1])) if window else None,
        reason=entry.get("reason"),
    )


def _anomaly(raw: Any) -> Anomaly:
    if not isinstance(raw, dict):
        raise TypeError("an anomaly is not an object")
    ts, te = raw.get("time_start"), raw.get("time_end")
    return Anomaly(
        kind=str(raw.get("kind", "anomaly")),
        explanation=str(raw.get("explanation", "")),
        op_indices=tuple(int(i) for i in raw.get("op_indices") or ()),
        key=raw.get("key"),
        processes=tuple(raw.get("processes") or ()),
        time_start=int(ts) if ts is not None else None,
        time_end=int(te) if te is not None else None,
    )


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
        calls = _pair_leniently(ops)
    return ops, calls, True


def _pair_leniently(ops: Sequence[Op]) -> list[Call]:
    """Pairing that drops completions without an invocation and closes superseded invokes."""
    pending: dict[Any, Op] = {}
    calls: list[Call] = []
    for op in ops:
        if not op.is_client:
            continue
        if op.type == "invoke":
            previous = pending.pop(op.process, None)
            if previous is not None:
                calls.append(Call(previous, None))
            pending[op.process] = op
        else:
            inv = pending.pop(op.process, None)
            if inv is not None:
                calls.append(Call(inv, op))
    calls.extend(Call(inv, None) for inv in pending.values())
    calls.sort(key=lambda c: c.invoke.index)
    return calls


def list_run_files(run_dir: Path) -> list[str]:
    """The run's own files (history, results, test.yaml, logs), the report itself left out."""
    if not run_dir.is_dir():
        return []
    skip = {REPORT_FILE, REPORT_FILE + ".tmp"}
    files = [p.name for p in run_dir.iterdir() if p.is_file() and p.name not in skip]
    known = {name: i for i, name in enumerate((HISTORY_FILE, RESULTS_FILE, TEST_FILE, *TEXT_LOGS))}
    return sorted(files, key=lambda name: (known.get(name, len(known)), name))


def list_node_logs(run_dir: Path) -> list[str]:
    nodes = run_dir / "nodes"
    if not nodes.is_dir():
        return []
    return sorted(str(p.relative_to(run_dir)) for p in nodes.rglob("*") if p.is_file())


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
    "HISTORY_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "TEST_FILE",
    "RunData",
    "describe_component",
    "fields_of",
    "load_run",
    "run_time",
]
