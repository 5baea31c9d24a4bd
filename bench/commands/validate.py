"""``lockbench validate``: run lockd with each unsafe switch and without, print the table.

Exit codes: 0 every bug caught on every seed and every control valid; 1 something not as
expected; 3 everything that ran was as expected but some switch is still pending (not proven).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.commands import summary
from bench.commands.overrides import (
    CLUSTER_FLAG_KEYS,
    add_cluster_flags,
    add_set_flag,
    add_store_flag,
    flag_overrides,
)
from bench.runner.run_series import RunRecord, Series
from bench.runner.test_run import RunOptions
from bench.runner.validation import (
    DEFAULT_SEEDS,
    DEFAULT_TIME_LIMIT_S,
    all_as_expected,
    build_cells,
    format_table,
    select_cases,
    table_rows,
)
from lockbench.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help=summary("validate"),
        description=(
            "Run the reference server with each of its unsafe bug switches under the workload "
            "and faults that should expose it, and the same tests without the switch, each on "
            "several seeds; print the table (bug, workload, fault, expected, verdict per seed, "
            "the checker that caught it, time to the first anomaly). About 25 minutes with the "
            "defaults on a 2-core machine (docs/reference-server.md)."
        ),
        epilog="Exit codes: 0 all as expected, 1 a bug missed or a control not valid, "
        "2 bad usage, 3 all that ran as expected but some switch is pending.",
    )
    add_store_flag(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), metavar="SEED")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, metavar="SECONDS")
    parser.add_argument("--only", nargs="+", metavar="SWITCH", help="only these bug switches")
    add_cluster_flags(
        parser, ["auto", "netns", "local", "ssh", "vagrant"], "run on this existing cluster"
    )
    add_set_flag(parser, "any test-file key for every run (e.g. netns_prefix=lbv); VALUE is YAML")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the records here")
    parser.set_defaults(func=run)


def _progress(record: RunRecord) -> None:
    cell = record.cell
    what = (
        record.skipped
        or record.error
        or (
            f"{record.verdict} (expected {cell.expected})"
            + (f", caught by {', '.join(record.caught_by)}" if record.caught_by else "")
        )
    )
    print(
        f"lockbench validate: {cell.labels.get('bug')} / {cell.workload} / {cell.fault} / "
        f"seed {cell.seed}: {what} [{record.wall_s:.0f} s]",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    if args.time_limit <= 0:
        raise ConfigError("--time-limit must be positive (seconds)")
    cases = select_cases(args.only)
    cells = build_cells(
        cases,
        args.seeds,
        time_limit=args.time_limit,
        settings=flag_overrides(args, CLUSTER_FLAG_KEYS),
    )  # every test validated before the first run starts
    started = time.monotonic()
    options = RunOptions(store=args.store, live_progress=False)
    records = Series(cells, options, progress=_progress).run()
    elapsed = time.monotonic() - started
    rows = table_rows(cases, records)
    print()
    print(format_table(rows, cases))
    print(f"\n{len(records)} runs in {elapsed / 60:.1f} minutes ({args.time_limit:g} s each)")
    if args.json is not None:
        args.json.write_text(
            json.dumps([r.to_json() for r in records], indent=2) + "\n", encoding="utf-8"
        )
    if not all_as_expected(rows):
        print("lockbench validate: NOT all as expected", file=sys.stderr)
        return EXIT_INVALID
    if any(row.ok is None for row in rows):
        print("lockbench validate: all that ran as expected; some switch is pending")
        return EXIT_UNKNOWN
    print("lockbench validate: every bug caught on every seed, every control valid")
    return EXIT_VALID
