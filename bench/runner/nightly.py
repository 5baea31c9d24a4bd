"""``lockbench nightly MATRIX.yaml``: a matrix file, its cells, and the night's files.

A matrix file names backends, workloads and nemeses (each a mapping of test-file keys), seeds,
a time limit per run and a total budget. The cells are every backend x workload x nemesis x seed
not excluded; each is validated completely (an unknown backend, workload or fault is a
ConfigError naming the matrix key) before the first run starts. A night writes
``store/nightly/<stamp>/``: ``nightly.json`` (every record), ``junit.xml`` and ``index.html``
(this night's matrix and the trends over every night in the same store).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from bench.runner.config import load_test_config
from bench.runner.run_series import Cell, RunRecord
from lockbench.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, ConfigError

NIGHTLY_DIR = "nightly"
RECORDS_FILE = "nightly.json"
JUNIT_FILE = "junit.xml"
PAGE_FILE = "index.html"
MATRIX_KEYS = frozenset(
    {
        "name",
        "budget_minutes",
        "time_limit",
        "seeds",
        "on_unknown",
        "settings",
        "backends",
        "workloads",
        "nemeses",
        "exclude",
    }
)
OnUnknown = Literal["fail", "pass"]


@dataclass(frozen=True, slots=True)
class NightlyMatrix:
    """A parsed matrix file: the cells to run and how to judge the night."""

    name: str
    budget_s: float
    cells: tuple[Cell, ...]
    on_unknown: OnUnknown


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def _named(where: str, value: Any) -> dict[str, Mapping[str, Any] | list[Any]]:
    entries = _mapping(where, value)
    if not entries:
        raise ConfigError(f"{where}: must name at least one entry")
    return {str(name): entry for name, entry in entries.items()}


def load_matrix(path: Path, overrides: Mapping[str, Any] | None = None) -> NightlyMatrix:
    """Read and validate a matrix file; every cell's test is resolved before anything runs.

    ``overrides`` are test-file keys for every run (the command line's ``--set``).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the matrix file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return _parse(path, _mapping("the matrix", data), dict(overrides or {}))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _parse(path: Path, data: Mapping[str, Any], overrides: Mapping[str, Any]) -> NightlyMatrix:
    unknown = sorted(set(data) - MATRIX_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(MATRIX_KEYS))}"
        )
    name = str(data.get("name") or path.stem)
    budget = data.get("budget_minutes", 60)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
        raise ConfigError(f"budget_minutes: must be a positive number, got {budget!r}")
    time_limit = data.get("time_limit", 60)
    if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or time_limit <= 0:
        raise ConfigError(f"time_limit: must be positive seconds, got {time_limit!r}")
    seeds = data.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise ConfigError(f"seeds: must be a non-empty list of integers, got {seeds!r}")
    on_unknown = data.get("on_unknown", "fail")
    if on_unknown not in ("fail", "pass"):
        raise ConfigError(f"on_unknown: must be fail or pass, got {on_unknown!r}")
    settings = dict(_mapping("settings", data.get("settings") or {}))
    settings.update(overrides)
    backends = _named("backends", data.get("backends"))
    workloads = _named("workloads", data.get("workloads"))
    nemeses = _named("nemeses", data.get("nemeses"))
    excluded = data.get("exclude") or []
    if not isinstance(excluded, list) or not all(isinstance(e, Mapping) for e in excluded):
        raise ConfigError("exclude: must be a list of {backend:, workload:, nemesis:} mappings")
    cells: list[Cell] = []
    for backend, backend_keys in backends.items():
        for workload, workload_keys in workloads.items():
            for nemesis, faults in nemeses.items():
                labels = {"backend": backend, "workload": workload, "nemesis": nemesis}
                if any(all(labels.get(k) == v for k, v in e.items()) for e in excluded):
                    continue
                for seed in seeds:
                    cells.append(
                        _cell(
                            labels,
                            _mapping(f"backends.{backend}", backend_keys),
                            _mapping(f"workloads.{workload}", workload_keys),
                            faults,
                            seed=seed,
                            time_limit=float(time_limit),
                            settings=settings,
                        )
                    )
    if not cells:
        raise ConfigError("the matrix has no runs left after exclude")
    return NightlyMatrix(name, float(budget) * 60, tuple(cells), on_unknown)


def _cell(
    labels: Mapping[str, str],
    backend_keys: Mapping[str, Any],
    workload_keys: Mapping[str, Any],
    faults: Any,
    *,
    seed: int,
    time_limit: float,
    settings: Mapping[str, Any],
) -> Cell:
    where = f"nemeses.{labels['nemesis']}"
    if not isinstance(faults, list):
        raise ConfigError(f"{where}: must be a list of nemesis entries ([] for none)")
    keys: dict[str, Any] = {
        "backend": labels["backend"],
        "backend_options": {},
        **backend_keys,
        **workload_keys,
        "workload": workload_keys.get("workload", labels["workload"]),
        "nemesis": faults,
        **settings,
        "name": f"nightly-{labels['backend']}-{labels['workload']}-{labels['nemesis']}",
        "seed": seed,
        "time_limit": settings.get("time_limit", time_limit),
    }
    keys.setdefault("workload_options", {})
    try:
        config = load_test_config(None, keys)
    except ConfigError as exc:
        cell = "/".join(labels.values())
        raise ConfigError(f"run {cell} (seed {seed}): {exc}") from exc
    return Cell(
        config,
        backend=labels["backend"],
        workload=labels["workload"],
        fault=labels["nemesis"],
        seed=seed,
        labels=labels,
    )


def night_dir(store: Path) -> Path:
    """A fresh directory for tonight's files: ``store/nightly/<YYYYmmddTHHMMSS>``."""
    parent = store / NIGHTLY_DIR
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for attempt in range(100):
        directory = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        return directory
    raise FileExistsError(f"{parent}: no fresh directory for {stamp}")


def write_records(
    directory: Path, matrix: NightlyMatrix, records: Sequence[RunRecord], elapsed_s: float
) -> Path:
    path = directory / RECORDS_FILE
    document = {
        "name": matrix.name,
        "started": directory.name,
        "elapsed_s": round(elapsed_s, 1),
        "budget_s": matrix.budget_s,
        "on_unknown": matrix.on_unknown,
        "runs": [r.to_json() for r in records],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def load_nights(store: Path) -> list[dict[str, Any]]:
    """Every night's records in the store, oldest first (unreadable ones skipped)."""
    nights: list[dict[str, Any]] = []
    parent = store / NIGHTLY_DIR
    if not parent.is_dir():
        return nights
    for directory in sorted(parent.iterdir()):
        try:
            night = json.loads((directory / RECORDS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(night, dict) and isinstance(night.get("runs"), list):
            nights.append(night)
    return nights


def exit_code(records: Sequence[RunRecord], on_unknown: OnUnknown) -> int:
    """1 when any run is invalid or errored; 3 for unknowns when the policy says fail."""
    if any(r.verdict == "invalid" or (r.verdict is None and not r.skipped) for r in records):
        return EXIT_INVALID
    if on_unknown == "fail" and any(r.verdict == "unknown" for r in records):
        return EXIT_UNKNOWN
    return EXIT_VALID
