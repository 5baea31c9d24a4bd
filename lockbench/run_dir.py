"""The run directory: ``store/<test-name>/<YYYYmmddTHHMMSS>/``, and ``store/latest``.

Layout (docs/history.md, docs/running.md): test.yaml (the resolved test), history.jsonl,
results.json, report.html, resource.log, nemesis.log, bench.log and nodes/<node>/*.log. This
module is the only one that knows the layout and results.json: the runner, ``lockbench check
RUN_DIR`` and the reports write and read them through it.

A run writes results.json twice: ``unfinished`` when it starts (so a bench killed with SIGKILL
leaves a directory every reader knows never finished), and the verdict at the end. The ``run``
notes say whether the test started and finished; ``never_valid_reason`` turns them into the
reason no command may call such a run valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from lockbench.checks import Anomaly, CheckResult, Verdict

TEST_FILE = "test.yaml"
HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
RESOURCE_LOG = "resource.log"
NEMESIS_LOG = "nemesis.log"
BENCH_LOG = "bench.log"
NODES_DIR = "nodes"
LATEST_LINK = "latest"
UNFINISHED_REASON = (
    "the run never finished (the bench stopped before checking, or is still running): "
    "its history may be a prefix"
)
TEXT_LOGS: tuple[str, ...] = (NEMESIS_LOG, BENCH_LOG)
RUN_DIR_TIME_FORMAT = "%Y%m%dT%H%M%S"
VERDICTS: frozenset[str] = frozenset({"valid", "invalid", "unknown"})


class RunDirProblem(ValueError):
    """A file of a run directory that exists but cannot be read; the message says which and why."""


def run_time(run_dir: Path) -> datetime | None:
    """The run's start from its directory name (``YYYYmmddTHHMMSS``), if it has that form."""
    try:
        return datetime.strptime(run_dir.name, RUN_DIR_TIME_FORMAT)
    except ValueError:
        return None


def create_run_dir(store: Path, test_name: str) -> Path:
    """Make a fresh run directory (a suffix keeps two runs in the same second apart)."""
    stamp = time.strftime(RUN_DIR_TIME_FORMAT)
    parent = store / test_name
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / NODES_DIR).mkdir()
        update_latest(store, run_dir)
        return run_dir
    raise FileExistsError(f"{parent}: could not create a fresh run directory for {stamp}")


def update_latest(store: Path, run_dir: Path) -> None:
    """Point ``store/latest`` at ``run_dir`` atomically (relative link, so the store can move)."""
    link = store / LATEST_LINK
    tmp = store / f".{LATEST_LINK}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.relative_to(store))
    os.replace(tmp, link)


def write_test_file(run_dir: Path, data: Mapping[str, Any]) -> Path:
    path = run_dir / TEST_FILE
    import yaml  # third-party, lazily: `lockbench check HISTORY` must start fast (no test.yaml)

    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def unfinished_notes() -> dict[str, Any]:
    """The ``run`` notes of a run that has started but not yet written its verdict."""
    return {"finished": False, "reason": UNFINISHED_REASON}


def never_valid_reason(notes: Mapping[str, Any] | None) -> str | None:
    """Why a run with these ``run`` notes can never be valid (set-up failed, the test never
    started, the bench never finished), or None for a run that ran to its end."""
    if not notes:
        return None
    if notes.get("setup_failed"):
        return "the run's set-up failed: the test never started"
    if notes.get("started") is False:
        return "the run was interrupted during set-up: the test never started"
    if notes.get("finished") is False:
        return UNFINISHED_REASON
    return None


def write_results(
    run_dir: Path,
    verdict: Verdict,
    results: Mapping[str, CheckResult],
    *,
    errors: Sequence[str] = (),
    notes: Mapping[str, Any] | None = None,
) -> Path:
    """Write results.json (format in docs/history.md) atomically; returns its path.

    ``errors`` are problems around the run that did not stop the analysis (a teardown that
    failed, a fault that could not be healed); ``notes`` are facts about the run (interrupted,
    ops counts). Both are extra keys; readers of the documented keys are unaffected.
    """
    data: dict[str, Any] = {
        "verdict": verdict,
        "checkers": {name: result.to_json() for name, result in results.items()},
    }
    if errors:
        data["errors"] = list(errors)
    if notes:
        data["run"] = dict(notes)
    path = run_dir / RESULTS_FILE
    tmp = run_dir / f".{RESULTS_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_text(run_dir: Path, name: str) -> str | None:
    """A run file's text (undecodable bytes replaced); None when the file is not there."""
    path = run_dir / name
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RunDirProblem(f"{name} cannot be read ({exc.strerror or exc}).") from exc


def read_test_data(run_dir: Path) -> dict[str, Any] | None:
    """The run's test.yaml as a mapping; None when there is none; RunDirProblem when it is not
    valid YAML or not a mapping."""
    text = _read_text(run_dir, TEST_FILE)
    if text is None:
        return None
    import yaml  # third-party, lazily: `lockbench check HISTORY` must start fast (no test.yaml)

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunDirProblem(f"{TEST_FILE} is not valid YAML ({exc.__class__.__name__}).") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RunDirProblem(f"{TEST_FILE} is not a mapping of settings.")
    return loaded


@dataclass(frozen=True, slots=True)
class StoredResults:
    """results.json as read back: the verdict (None if missing or not a verdict), the checkers'
    results, the checkers that could not be read (``problems``), and the run's extra keys."""

    verdict: Verdict | None
    results: tuple[CheckResult, ...] = ()
    problems: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    notes: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def read_results(run_dir: Path) -> StoredResults | None:
    """The run's results.json; None when there is none; RunDirProblem when it does not parse."""
    text = _read_text(run_dir, RESULTS_FILE)
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDirProblem(
            f"{RESULTS_FILE} does not parse ({exc.msg} at line {exc.lineno})."
        ) from exc
    if not isinstance(raw, dict):
        raise RunDirProblem(f"{RESULTS_FILE} is not a JSON object.")
    results: list[CheckResult] = []
    problems: list[str] = []
    checkers = raw.get("checkers")
    if isinstance(checkers, dict):
        for name, entry in checkers.items():
            try:
                results.append(check_result_from_json(str(name), entry))
            except (TypeError, ValueError, KeyError) as exc:
                problems.append(f"{RESULTS_FILE}: checker {name!r} could not be read ({exc}).")
    verdict = raw.get("verdict")
    errors = raw.get("errors")
    notes = raw.get("run")
    return StoredResults(
        verdict=verdict if verdict in VERDICTS else None,
        results=tuple(results),
        problems=tuple(problems),
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        notes=dict(notes) if isinstance(notes, dict) else None,
        extra={k: v for k, v in raw.items() if k not in ("verdict", "checkers", "errors", "run")},
    )


def check_result_from_json(name: str, entry: Any) -> CheckResult:
    """One checker's entry of results.json; TypeError/ValueError say what is wrong with it."""
    if not isinstance(entry, dict):
        raise TypeError("not an object")
    verdict = entry.get("verdict", "unknown")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}")
    anomalies = tuple(_anomaly_from_json(a) for a in entry.get("anomalies") or ())
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


def _anomaly_from_json(raw: Any) -> Anomaly:
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


def list_run_files(run_dir: Path) -> list[str]:
    """The run's own files (history, results, test.yaml, logs), the report itself left out."""
    if not run_dir.is_dir():
        return []
    skip = {REPORT_FILE, REPORT_FILE + ".tmp"}
    files = [p.name for p in run_dir.iterdir() if p.is_file() and p.name not in skip]
    known = {name: i for i, name in enumerate((HISTORY_FILE, RESULTS_FILE, TEST_FILE, *TEXT_LOGS))}
    return sorted(files, key=lambda name: (known.get(name, len(known)), name))


def list_node_logs(run_dir: Path) -> list[str]:
    """The nodes' logs fetched into the run directory, relative to it."""
    nodes = run_dir / NODES_DIR
    if not nodes.is_dir():
        return []
    return sorted(str(p.relative_to(run_dir)) for p in nodes.rglob("*") if p.is_file())


class HistoryExtent(NamedTuple):
    """How much a run's history holds: its client invocations and its last op's time. (A
    NamedTuple: this module is on ``lockbench check``'s start-up path, where a dataclass costs
    several times as much to build.)"""

    client_invocations: int = 0
    last_time_ns: int = 0

    @property
    def duration_s(self) -> float:
        return self.last_time_ns / 1e9


def history_extent(run_dir: Path) -> HistoryExtent:
    """One pass over the history, for a listing of runs (no ops built, no pairing): unreadable
    lines are skipped as the report skips them; no history is an empty extent."""
    invocations = 0
    last = 0
    try:
        with (run_dir / HISTORY_FILE).open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
                t = record.get("time")
                if isinstance(t, int) and t > last:
                    last = t
                if record.get("type") == "invoke" and isinstance(record.get("process"), int):
                    invocations += 1
    except OSError:
        return HistoryExtent()
    return HistoryExtent(invocations, last)
