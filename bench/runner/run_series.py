"""A series of test runs, one after another: the engine of ``lockbench compare``, ``validate``
and ``nightly``.

Each cell of a series is one resolved test (a ``TestConfig``) with the labels a summary needs
(backend, workload, fault, seed) and, for self-validation, the verdict it must have. Runs go one
after another (two cores; concurrent clusters would measure each other). With a budget, the
series estimates each run's wall time (its time limit plus the set-up and check overhead
measured so far) before starting it and skips it when that would pass the budget, so a nightly
job ends on time and says what it left out. With a ``SharedCluster`` every networked cell runs
on the one cluster the series makes at its first such cell (the backend's data of earlier runs
wiped first) and takes down at its end, as ``lockbench compare`` does; without one, each test
runs where it says. Ctrl-C stops the run in progress the usual way and starts no more.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cluster import open_cluster
from bench.cluster.runtimes import INVENTORY_FILE, cluster_down, cluster_up
from bench.runner.components import create_backend
from bench.runner.config import TestConfig
from bench.runner.test_run import RunOptions, run_test
from lockbench.protocols import Verdict
from lockbench.run_dir import RESULTS_FILE

log = logging.getLogger(__name__)

# Set-up, recovery, teardown and checking around a run's time limit, before one was measured
# (a five-node netns run of lockd: cluster, deploy, leader, final reads, logs, report).
DEFAULT_OVERHEAD_S = 30.0
# How many anomaly lines a summary quotes.
SUMMARY_ANOMALIES = 3


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of a series: the test, its labels, and the verdict it should have (if known)."""

    config: TestConfig
    backend: str
    workload: str
    fault: str
    seed: int
    expected: Verdict | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def case(self) -> str:
        """A stable name for the cell across nights: test and seed."""
        return f"{self.config.name}@seed{self.seed}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What one cell did: its verdict and the figures a summary table or trend page shows."""

    cell: Cell
    verdict: Verdict | None  # None: skipped, or the bench itself failed
    exit_code: int | None
    run_dir: Path | None
    wall_s: float
    caught_by: tuple[str, ...] = ()
    first_anomaly_s: float | None = None
    ok_ops: int = 0
    ok_per_s: float | None = None
    failover_s: float | None = None
    anomaly_summary: str = ""
    reason: str = ""
    error: str | None = None
    skipped: str | None = None
    errors: tuple[str, ...] = ()  # every error of the run (``error`` names the first)

    @property
    def as_expected(self) -> bool | None:
        if self.cell.expected is None:
            return None
        return self.verdict == self.cell.expected

    def to_json(self) -> dict[str, Any]:
        cell = self.cell
        return {
            "case": cell.case,
            "test": cell.config.name,
            "backend": cell.backend,
            "workload": cell.workload,
            "fault": cell.fault,
            "seed": cell.seed,
            "expected": cell.expected,
            "labels": dict(cell.labels),
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "wall_s": round(self.wall_s, 2),
            "caught_by": list(self.caught_by),
            "first_anomaly_s": self.first_anomaly_s,
            "ok_ops": self.ok_ops,
            "ok_per_s": self.ok_per_s,
            "failover_s": self.failover_s,
            "anomaly_summary": self.anomaly_summary,
            "reason": self.reason,
            "error": self.error,
            "skipped": self.skipped,
        }


def summarise_results(results: Mapping[str, Any], time_limit: float) -> dict[str, Any]:
    """The figures of one run's results.json: catching checkers, first anomaly, throughput,
    failover time (the median over its kill and partition windows of the time to the first
    successful op), a few anomaly lines, and the reasons for unknown."""
    checkers: Mapping[str, Any] = results.get("checkers") or {}
    caught = tuple(name for name, r in checkers.items() if r.get("verdict") == "invalid")
    starts: list[int] = []
    lines: list[str] = []
    reasons: list[str] = []
    for name, result in checkers.items():
        for anomaly in result.get("anomalies") or ():
            # when the anomaly was complete (its last op), else its first op
            at = anomaly.get("time_end")
            at = at if isinstance(at, int) else anomaly.get("time_start")
            if isinstance(at, int):
                starts.append(at)
            if len(lines) < SUMMARY_ANOMALIES:
                lines.append(f"{name}: {anomaly.get('kind')}: {anomaly.get('explanation')}")
        if result.get("verdict") == "unknown" and result.get("reason"):
            reasons.append(f"{name}: {result['reason']}")
    # the run's own reason, then stats (it names the op kinds that never succeeded), then the rest
    reasons.sort(key=lambda line: not line.startswith("stats: "))
    notes = results.get("run") or {}
    if notes.get("reason"):
        reasons.insert(0, str(notes["reason"]))
    ok = int((notes.get("ops") or {}).get("ok") or 0)
    windows = ((checkers.get("availability") or {}).get("stats") or {}).get("windows") or ()
    failovers = [
        w["first_success_after_s"]
        for w in windows
        if isinstance(w, Mapping) and isinstance(w.get("first_success_after_s"), int | float)
    ]
    total = sum(len(r.get("anomalies") or ()) for r in checkers.values())
    if total > len(lines):
        lines.append(f"... {total - len(lines)} more anomalies")
    return {
        "caught_by": caught,
        "first_anomaly_s": round(min(starts) / 1e9, 3) if starts else None,
        "ok_ops": ok,
        "ok_per_s": round(ok / time_limit, 1) if time_limit > 0 else None,
        "failover_s": round(statistics.median(failovers), 3) if failovers else None,
        "anomaly_summary": "\n".join(lines),
        "reason": "; ".join(reasons),
    }


def read_results(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


Runner = Callable[[TestConfig, RunOptions], Any]


@dataclass
class SharedCluster:
    """The one cluster a series' networked cells run on: made at the first such cell, each
    backend's data wiped before each of its runs (each run stops the service on every node at
    its end), taken down by ``close``."""

    runtime: str
    directory: Path
    subnet: str
    prefix: str
    nodes: int = 5
    inventory_path: Path | None = None
    handle: Any = None

    def prepare(self, config: TestConfig) -> TestConfig:
        """The cell's test pointed at this cluster, with a fresh service (runtime none: as is)."""
        if config.runtime == "none":
            return config
        inventory = self.open()
        self.wipe(config)
        return dataclasses.replace(config, inventory=str(inventory))

    def open(self) -> Path:
        if self.inventory_path is None:
            inventory = cluster_up(
                self.runtime,
                self.directory,
                subnet=self.subnet,
                prefix=self.prefix,
                nodes=self.nodes,
                port_offset=0,
            )
            self.inventory_path = self.directory / INVENTORY_FILE
            self.handle = open_cluster(inventory)
        return self.inventory_path

    def wipe(self, config: TestConfig) -> None:
        """Delete the test's backend's data on every node (a fresh service for each run)."""
        if self.handle is None:
            return
        instance = create_backend(config.backend, config.backend_options)
        for node in self.handle.nodes:
            try:
                instance.wipe(node)
            except Exception as exc:
                log.warning("could not wipe %s on %s: %s", config.backend, node.name, exc)

    def close(self) -> list[str]:
        errors: list[str] = []
        if self.handle is not None:
            try:
                self.handle.close()
            except Exception as exc:
                errors.append(f"could not close the cluster's connections: {exc}")
        if self.inventory_path is not None:
            try:
                cluster_down(self.directory)
            except Exception as exc:
                errors.append(f"could not take down the cluster in {self.directory}: {exc}")
        return errors


class Series:
    """Runs cells in order within ``budget_s`` (None: no budget); ``progress`` gets each record.

    ``cluster``: the one cluster every networked cell runs on (None: each test runs where it
    says); the series takes it down when it ends.
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        options: RunOptions,
        *,
        budget_s: float | None = None,
        progress: Callable[[RunRecord], None] | None = None,
        runner: Runner = run_test,
        cluster: SharedCluster | None = None,
    ) -> None:
        self.cells = list(cells)
        self.options = options
        self.budget_s = budget_s
        self.progress = progress
        self.runner = runner
        self.cluster = cluster
        self.overheads: list[float] = []

    def estimate(self, cell: Cell) -> float:
        overhead = max(self.overheads) if self.overheads else DEFAULT_OVERHEAD_S
        return cell.config.time_limit + overhead

    def run(self) -> list[RunRecord]:
        try:
            return self._run_all()
        finally:
            for error in self.cluster.close() if self.cluster is not None else ():
                log.error("series: %s", error)

    def _run_all(self) -> list[RunRecord]:
        started = time.monotonic()
        records: list[RunRecord] = []
        stopped = ""
        for cell in self.cells:
            elapsed = time.monotonic() - started
            if stopped:
                record = RunRecord(cell, None, None, None, 0.0, skipped=stopped)
            elif self.budget_s is not None and elapsed + self.estimate(cell) > self.budget_s:
                record = RunRecord(
                    cell,
                    None,
                    None,
                    None,
                    0.0,
                    skipped=f"over the time budget ({elapsed:.0f} s used, about "
                    f"{self.estimate(cell):.0f} s needed, {self.budget_s:.0f} s allowed)",
                )
            else:
                record = self._run_one(cell)
                if record.error == "interrupted":
                    stopped = "the matrix was interrupted"
            records.append(record)
            if self.progress is not None:
                self.progress(record)
        return records

    def _run_one(self, cell: Cell) -> RunRecord:
        began = time.monotonic()
        config = cell.config
        log.info("series: running %s", cell.case)
        try:
            if self.cluster is not None:
                config = self.cluster.prepare(config)
            outcome = self.runner(config, self.options)
        except Exception as exc:  # one broken cell must not stop the night
            wall = time.monotonic() - began
            return RunRecord(cell, None, None, None, wall, error=f"{type(exc).__name__}: {exc}")
        wall = time.monotonic() - began
        log.info("series: %s took %.0f s", cell.case, wall)
        self.overheads.append(max(0.0, wall - config.time_limit))
        summary = summarise_results(read_results(outcome.run_dir), config.time_limit)
        error = "interrupted" if outcome.interrupted else None
        if error is None and outcome.errors and outcome.verdict == "unknown":
            error = outcome.errors[0]
        return RunRecord(
            cell,
            outcome.verdict,
            outcome.exit_code,
            outcome.run_dir,
            wall,
            error=error,
            errors=tuple(outcome.errors),
            **summary,
        )
