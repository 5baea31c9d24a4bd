"""``lockbench nightly MATRIX.yaml``: run a matrix within a time budget; JUnit XML and a page.

Exit codes: 0 every run valid (or unknown with ``on_unknown: pass``), 1 a run invalid or
errored, 2 bad matrix or flags, 3 unknown runs with ``on_unknown: fail`` (the default).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.commands import summary
from bench.commands.overrides import add_set_flag, add_store_flag, set_items
from bench.runner.junit import write_junit
from bench.runner.nightly import (
    JUNIT_FILE,
    PAGE_FILE,
    exit_code,
    load_matrix,
    load_nights,
    night_dir,
    write_records,
)
from bench.runner.run_series import RunRecord, Series
from bench.runner.test_run import RunOptions
from lockbench.errors import ConfigError
from reports.nightly import write_nightly_page


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "nightly",
        help=summary("nightly"),
        description=(
            "Run every backend x workload x nemesis x seed of MATRIX.yaml one after another, "
            "starting no run that would pass the budget (those are listed as skipped). Writes "
            "store/nightly/<stamp>/ with nightly.json, junit.xml and index.html (this night's "
            "matrix and the trends over every night in the store). docs/running.md"
        ),
        epilog="Exit codes: 0 all valid, 1 a run invalid or errored, 2 bad matrix, "
        "3 unknown runs (with on_unknown: fail).",
    )
    parser.add_argument("matrix", type=Path, metavar="MATRIX.yaml")
    add_store_flag(parser)
    parser.add_argument(
        "--budget-minutes", type=float, metavar="M", help="override the matrix's budget"
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also copy junit.xml here")
    parser.add_argument(
        "--on-unknown", choices=["fail", "pass"], help="override the matrix's unknown policy"
    )
    add_set_flag(
        parser, "any test-file key for every run (e.g. inventory=.clusters/lb/inventory.yaml)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the matrix and list its runs only"
    )
    parser.set_defaults(func=run)


def _progress(record: RunRecord) -> None:
    cell = record.cell
    what = record.skipped or record.verdict or f"error: {record.error}"
    extra = f" ({record.reason})" if record.verdict == "unknown" and record.reason else ""
    print(
        f"lockbench nightly: {cell.backend} / {cell.workload} / {cell.fault} / seed "
        f"{cell.seed}: {what}{extra} [{record.wall_s:.0f} s]",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix, set_items(args.set))
    if args.budget_minutes is not None:
        if args.budget_minutes <= 0:
            raise ConfigError("--budget-minutes must be positive")
        matrix = type(matrix)(
            matrix.name, args.budget_minutes * 60, matrix.cells, matrix.on_unknown
        )
    if args.on_unknown is not None:
        matrix = type(matrix)(matrix.name, matrix.budget_s, matrix.cells, args.on_unknown)
    if args.dry_run:
        for cell in matrix.cells:
            print(f"{cell.backend} / {cell.workload} / {cell.fault} / seed {cell.seed}")
        print(f"{len(matrix.cells)} runs, budget {matrix.budget_s / 60:g} minutes")
        return 0
    started = time.monotonic()
    options = RunOptions(store=args.store, live_progress=False)
    records = Series(matrix.cells, options, budget_s=matrix.budget_s, progress=_progress).run()
    elapsed = time.monotonic() - started
    directory = night_dir(args.store)
    write_records(directory, matrix, records, elapsed)
    unknown_fails = matrix.on_unknown == "fail"
    junit = write_junit(directory / JUNIT_FILE, matrix.name, records, unknown_fails=unknown_fails)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_bytes(junit.read_bytes())
    night = json.loads((directory / "nightly.json").read_text(encoding="utf-8"))
    page = write_nightly_page(directory / PAGE_FILE, night, load_nights(args.store))
    states = [(r.skipped and "skipped") or r.verdict or "error" for r in records]
    counts = ", ".join(
        f"{states.count(s)} {s}"
        for s in ("valid", "invalid", "unknown", "error", "skipped")
        if states.count(s)
    )
    print(f"lockbench nightly: {len(records)} runs in {elapsed / 60:.1f} minutes: {counts}")
    print(f"lockbench nightly: {junit}\nlockbench nightly: {page}")
    return exit_code(records, matrix.on_unknown)
