"""A matrix of runs (backend x workload x fault) on one cluster, one backend at a time.

``lockbench compare`` plans it here and runs it through ``bench.runner.run_series`` (the one
engine that runs a series of tests, also under ``validate`` and ``nightly``). Planning does all
the checking before anything starts: every name is resolved, every cell's test file is written
and validated like ``lockbench run`` validates one, and a cell that cannot run (a fault the
runtime cannot inject, or one that cannot reach the backend's servers) gets its reason instead
of a test. Running makes the cluster once (the series' ``SharedCluster``), wipes each backend's
data before each of its runs, and takes the cluster down last.

The fault schedule of a cell depends only on the fault, the time limit and the seed (random
targets, drawn from the seed), so every backend meets the same faults at the same times.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.cluster import runtime_capabilities
from bench.runner.components import (
    backend_runtimes,
    create_backend,
    load_backend_class,
    workload_names,
)
from bench.runner.config import TestConfig, load_test_config
from bench.runner.run_series import Cell as SeriesCell
from bench.runner.run_series import RunRecord, Series, SharedCluster
from bench.runner.test_run import RunOptions
from lockbench.errors import ConfigError
from lockbench.plugins import NEMESES, plugin_names
from lockbench.protocols import Verdict, fault_refusal, fencing_tokens
from lockbench.run_dir import RunDirProblem, read_results

log = logging.getLogger(__name__)

# "none": a run without faults, the baseline a backend's faulted runs are read against.
NO_FAULT = "none"
CELLS_DIR = "cells"
SUMMARY_FILE = "compare.json"
NODES = 5
# Options that let each backend run well on a busy two-core machine (see tests/configs/).
BACKEND_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    # a 100 ms Raft tick: the 50 ms default churns leaders on a loaded machine (default.yaml)
    "reference": {"tick_ms": 100},
}
# How a backend's rows treat the protected resource (--resource-mode): "auto" is fenced for a
# backend whose grants carry a fencing token and unfenced for one without (a fenced resource
# refuses every access without a token, so such a run would check nothing); "both" runs a row
# of each.
RESOURCE_CHOICES = ("auto", "fenced", "unfenced", "both")
WORKLOAD_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "mutex": {"locks": 3, "hold": 0.05, "think": 0.05, "acquire_timeout": 3},
    "lease-expiry": {"locks": 2, "acquire_timeout": 3, "stall_probability": 0.3},
}


@dataclass(frozen=True, slots=True)
class MatrixSpec:
    """What to run: the names, and how long and how hard."""

    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    faults: tuple[str, ...]
    time_limit: float = 20.0
    seed: int = 1
    concurrency: int = 6
    ttl: float = 3.0
    netns_prefix: str = "lb"
    subnet: str = "10.77.0.0/24"
    runtime: str | None = None  # None: netns as root, else local
    resource_mode: str = "auto"  # one of RESOURCE_CHOICES, for every backend not named below
    resource_modes: Mapping[str, str] = field(default_factory=dict)  # backend -> choice

    def resource_choice(self, backend: str) -> str:
        return self.resource_modes.get(backend, self.resource_mode)


@dataclass(frozen=True, slots=True)
class Cell:
    backend: str
    workload: str
    fault: str
    resource_mode: str = "fenced"

    @property
    def name(self) -> str:
        mode = "" if self.resource_mode == "fenced" else f"-{self.resource_mode}"
        name = f"{self.backend}-{self.workload}-{self.fault}{mode}"
        return name.replace(":", "_").replace(".", "_")


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One row of the verdict matrix: a backend with one resource mode, and why that mode."""

    backend: str
    resource_mode: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "resource_mode": self.resource_mode, "note": self.note}


@dataclass(frozen=True, slots=True)
class PlannedCell:
    """A cell with its validated test, or the reason it cannot run."""

    cell: Cell
    test_file: Path | None
    config: TestConfig | None
    refusal: str | None


@dataclass(frozen=True, slots=True)
class CellOutcome:
    """What a cell gave: its run directory and verdict, or why there is none."""

    cell: Cell
    run_dir: Path | None
    verdict: Verdict | None
    anomalies: int
    reason: str | None = None
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.cell.backend,
            "workload": self.cell.workload,
            "fault": self.cell.fault,
            "resource_mode": self.cell.resource_mode,
            "run_dir": None if self.run_dir is None else str(self.run_dir.resolve()),
            "verdict": self.verdict,
            "anomalies": self.anomalies,
            "reason": self.reason,
            "errors": list(self.errors),
        }


@dataclass
class MatrixPlan:
    spec: MatrixSpec
    runtime: str
    directory: Path
    cells: list[PlannedCell] = field(default_factory=list)
    rows: list[MatrixRow] = field(default_factory=list)


def split_names(text: str, what: str) -> tuple[str, ...]:
    """``a,b,c`` -> names, each once, in order; ConfigError if none."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ConfigError(f"--{what}: give at least one name (comma-separated)")
    return names


def parse_resource_modes(text: str, backends: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``--resource-mode``: ``MODE`` for every backend and/or ``BACKEND=MODE`` items.

    ``auto,etcd=both`` -> ("auto", {"etcd": "both"}); ConfigError naming the bad item.
    """
    default = "auto"
    per_backend: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        backend, _, mode = item.rpartition("=")
        if mode not in RESOURCE_CHOICES:
            raise ConfigError(
                f"--resource-mode: {item!r}: the mode must be one of {', '.join(RESOURCE_CHOICES)}"
            )
        if not backend:
            default = mode
        elif backend not in backends:
            raise ConfigError(
                f"--resource-mode: {item!r}: {backend!r} is not one of --backends "
                f"({', '.join(backends)})"
            )
        else:
            per_backend[backend] = mode
    return default, per_backend


def matrix_rows(spec: MatrixSpec, backend: str) -> list[MatrixRow]:
    """The rows of one backend: its resource mode(s) from ``spec``, each with why."""
    choice = spec.resource_choice(backend)
    has_tokens = fencing_tokens(create_backend(backend, BACKEND_OPTIONS.get(backend, {})))
    if choice == "both":
        modes = ["fenced", "unfenced"]
        note = "both modes asked for"
    elif choice == "auto":
        modes = ["fenced" if has_tokens else "unfenced"]
        note = "its grants carry a fencing token" if has_tokens else "it has no fencing token"
    else:
        modes = [choice]
        note = "asked for"
    rows = []
    for mode in modes:
        row_note = note
        if mode == "fenced" and not has_tokens:
            row_note = f"{note}; it has no fencing token, so the resource refuses every access"
        rows.append(MatrixRow(backend, mode, row_note))
    return rows


def cluster_runtime(spec: MatrixSpec) -> str:
    return spec.runtime or ("netns" if os.geteuid() == 0 else "local")


def fault_schedule(time_limit: float) -> dict[str, Any]:
    """About three fault windows per run, each half its interval long."""
    interval = max(4.0, round(time_limit / 3.0, 1))
    return {"interval": interval, "duration": round(interval / 2.0, 1)}


def nemesis_entry(fault: str, time_limit: float) -> dict[str, Any]:
    """The one fault a cell runs, targets drawn from the seed (the same for every backend)."""
    schedule = fault_schedule(time_limit)
    if fault == "partition":
        return {"fault": "partition", "shape": "majorities-ring", "schedule": schedule}
    if fault == "clock":
        # a jump larger than the TTL, on two nodes: a wall-clock lease would expire at once
        return {
            "fault": "clock",
            "mode": "bump",
            "offset_ms": 10_000,
            "target": "minority",
            "schedule": schedule,
        }
    if fault == "netem":
        return {"fault": "netem", "delay_ms": 100, "jitter_ms": 50, "schedule": schedule}
    return {"fault": fault, "target": "random", "schedule": schedule}


def cell_test_data(spec: MatrixSpec, cell: Cell, runtime: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": f"compare-{cell.name}",
        "runtime": runtime,
        "backend": cell.backend,
        "backend_options": dict(BACKEND_OPTIONS.get(cell.backend, {})),
        "workload": cell.workload,
        "workload_options": dict(WORKLOAD_OPTIONS.get(cell.workload, {})),
        "nemesis": [] if cell.fault == NO_FAULT else [nemesis_entry(cell.fault, spec.time_limit)],
        "time_limit": spec.time_limit,
        "concurrency": spec.concurrency,
        "ttl": spec.ttl,
        "resource_mode": cell.resource_mode,
        "op_timeout": 5,
        "seed": spec.seed,
        # an upper bound on waiting for a leader: five JVMs may take minutes on a loaded machine
        "recovery_bound": 240,
    }
    if runtime == "netns":
        data["netns_prefix"] = spec.netns_prefix
        data["subnet"] = spec.subnet
    return data


def _runtime_for(backend: str, cluster: str) -> tuple[str, str | None]:
    """The runtime a backend's cells run on, or a reason they cannot run on this machine."""
    runtimes = backend_runtimes(load_backend_class(backend))
    if runtimes == ("none",):
        return "none", None
    if runtimes is not None and cluster not in runtimes:
        return cluster, (
            f"{backend} runs only on runtime(s) {', '.join(runtimes)}; this machine's "
            f"cluster is {cluster}" + (" (run as root for netns)" if cluster == "local" else "")
        )
    return cluster, None


def fault_names() -> tuple[str, ...]:
    """The faults a column may name: ``none`` and every nemesis fault plug-in."""
    return (NO_FAULT, *plugin_names(NEMESES))


def _capabilities(runtime: str) -> frozenset[str]:
    return frozenset() if runtime == "none" else runtime_capabilities(runtime)


def refusal_for(backend: str, fault: str, runtime: str) -> str | None:
    """Why ``fault`` cannot be tested on ``backend`` here (None: it can)."""
    if fault == NO_FAULT:
        return None
    if runtime == "none":
        return f"{backend} runs inside the bench (runtime none): there is no server to {fault}"
    if fault not in _capabilities(runtime):
        return f"the {runtime} runtime cannot inject {fault} faults"
    instance = create_backend(backend, BACKEND_OPTIONS.get(backend, {}))
    reason = fault_refusal(instance, fault, runtime)
    return None if reason is None else f"{fault} fault cannot reach {backend}: {reason}"


def plan_matrix(spec: MatrixSpec, directory: Path) -> MatrixPlan:
    """Check every name and every cell's test before anything starts (ConfigError: exit 2)."""
    for backend in spec.backends:
        load_backend_class(backend)  # unknown names: ConfigError listing the known ones
    known_workloads = sorted(workload_names())
    for workload in spec.workloads:
        if workload not in known_workloads:
            raise ConfigError(f"unknown workload {workload!r}; known: {', '.join(known_workloads)}")
    faults = fault_names()
    for fault in spec.faults:
        if fault not in faults:
            raise ConfigError(f"unknown nemesis fault {fault!r}; known: {', '.join(faults)}")
    if spec.time_limit <= 0:
        raise ConfigError(f"--time-limit must be positive seconds: {spec.time_limit:g}")
    for choice in (spec.resource_mode, *spec.resource_modes.values()):
        if choice not in RESOURCE_CHOICES:
            raise ConfigError(
                f"unknown resource mode {choice!r}; known: {', '.join(RESOURCE_CHOICES)}"
            )
    runtime = cluster_runtime(spec)
    plan = MatrixPlan(spec, runtime, directory)
    cells_dir = directory / CELLS_DIR
    cells_dir.mkdir(parents=True, exist_ok=True)
    for backend in spec.backends:
        backend_runtime, backend_refusal = _runtime_for(backend, runtime)
        for row in matrix_rows(spec, backend):
            plan.rows.append(row)
            for workload in spec.workloads:
                for fault in spec.faults:
                    cell = Cell(backend, workload, fault, row.resource_mode)
                    refusal = backend_refusal or refusal_for(backend, fault, backend_runtime)
                    if refusal is not None:
                        plan.cells.append(PlannedCell(cell, None, None, refusal))
                        continue
                    plan.cells.append(_planned(spec, cell, backend_runtime, cells_dir))
    return plan


def _planned(spec: MatrixSpec, cell: Cell, runtime: str, cells_dir: Path) -> PlannedCell:
    """A cell's test file, written and validated as ``lockbench run`` would."""
    path = cells_dir / f"{cell.name}.yaml"
    data = cell_test_data(spec, cell, runtime)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        config = load_test_config(path)
    except ConfigError as exc:
        raise ConfigError(f"cell {cell.name}: {exc}") from exc
    return PlannedCell(cell, path, config, None)


def read_outcome(cell: Cell, run_dir: Path, errors: Sequence[str]) -> CellOutcome:
    """A finished cell from its run directory's results.json (``lockbench.run_dir``)."""
    try:
        stored = read_results(run_dir)
    except RunDirProblem as exc:
        return CellOutcome(cell, run_dir, None, 0, f"no results: {exc}", tuple(errors))
    if stored is None:
        return CellOutcome(cell, run_dir, None, 0, "no results.json", tuple(errors))
    verdict = stored.verdict
    anomalies = sum(len(result.anomalies) for result in stored.results)
    notes: Mapping[str, Any] = stored.notes or {}
    reason = None
    if notes.get("setup_failed"):
        reason = "could not set up: " + "; ".join(errors or ["see bench.log"])
        verdict = None
    elif notes.get("reason"):
        reason = str(notes["reason"])
    ops = notes.get("ops")
    if verdict == "valid" and isinstance(ops, Mapping) and ops.get("ok") == 0:
        # nothing succeeded, so nothing was checked: a verdict must be earned
        verdict = "unknown"
        reason = "no client operation succeeded: nothing was checked"
    return CellOutcome(cell, run_dir, verdict, anomalies, reason, tuple(errors))


def series_cell(spec: MatrixSpec, cell: Cell, config: TestConfig) -> SeriesCell:
    """A planned cell as a cell of the series that runs it."""
    return SeriesCell(
        config,
        cell.backend,
        cell.workload,
        cell.fault,
        spec.seed,
        labels={"resource_mode": cell.resource_mode},
    )


def cell_outcome(cell: Cell, record: RunRecord) -> CellOutcome:
    """What the series' record of a cell says, as the matrix shows it."""
    if record.run_dir is not None:
        return read_outcome(cell, record.run_dir, record.errors)
    reason = record.skipped or (f"the bench failed: {record.error}" if record.error else None)
    return CellOutcome(cell, None, None, 0, reason)


def run_matrix(
    plan: MatrixPlan,
    store: Path,
    *,
    on_cell: Callable[[CellOutcome], None] | None = None,
) -> list[CellOutcome]:
    """Run every planned cell in order (one backend at a time) on one shared cluster, through
    ``bench.runner.run_series``; refused cells keep their reason, in their place."""
    runnable = [planned for planned in plan.cells if planned.config is not None]
    remaining = iter(plan.cells)
    outcomes: list[CellOutcome] = []

    def emit(outcome: CellOutcome) -> None:
        outcomes.append(outcome)
        if on_cell is not None:
            on_cell(outcome)

    def refused_until(stop: PlannedCell | None) -> None:
        """Every refused cell before ``stop`` (None: to the end), in plan order."""
        for planned in remaining:
            if planned is stop:
                return
            emit(CellOutcome(planned.cell, None, None, 0, planned.refusal))

    ran = iter(runnable)  # the series reports its cells in order, one record each

    def progress(record: RunRecord) -> None:
        planned = next(ran)
        refused_until(planned)
        emit(cell_outcome(planned.cell, record))

    cluster = SharedCluster(
        plan.runtime,
        plan.directory / "cluster",
        subnet=plan.spec.subnet,
        prefix=plan.spec.netns_prefix,
        nodes=NODES,
    )
    Series(
        [series_cell(plan.spec, p.cell, p.config) for p in runnable if p.config is not None],
        RunOptions(store=store, live_progress=False),
        progress=progress,
        cluster=cluster,
    ).run()
    refused_until(None)
    return outcomes


def write_summary(
    directory: Path,
    spec: MatrixSpec,
    outcomes: Sequence[CellOutcome],
    rows: Sequence[MatrixRow] = (),
) -> Path:
    """compare.json: the spec, the matrix's rows and every cell's outcome (compare.html is
    built from it)."""
    path = directory / SUMMARY_FILE
    document = {
        "backends": list(spec.backends),
        "rows": [row.to_json() for row in rows],
        "workloads": list(spec.workloads),
        "faults": list(spec.faults),
        "time_limit": spec.time_limit,
        "seed": spec.seed,
        "concurrency": spec.concurrency,
        "cells": [outcome.to_json() for outcome in outcomes],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_plan(directory: Path) -> None:
    """Drop a plan's directory (after a validation error: nothing ran)."""
    shutil.rmtree(directory, ignore_errors=True)
