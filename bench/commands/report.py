"""``lockbench report RUN_DIR``: (re)write a run's self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.commands import summary
from lockbench.errors import EXIT_VALID, ConfigError
from reports.index import build_index
from reports.render import render_report


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help=summary("report"),
        description=(
            "Render the HTML report of a stored run (store/<test>/<timestamp>/ or store/latest): "
            "verdict, checker table, anomalies, timeline with fault windows, lock holders, "
            "latency, cluster roles and clocks. A run with a missing or truncated history still "
            "gets a report that says what is missing."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    parser.add_argument(
        "--index",
        action="store_true",
        help="also rewrite the store's index.html (the store is RUN_DIR's grandparent)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a directory; pass a run directory such as store/latest")
    out = render_report(run_dir.resolve() if run_dir.is_symlink() else run_dir)
    print(f"report: {out}")
    if args.index:
        print(f"index: {build_index(run_dir.resolve().parent.parent)}")
    return EXIT_VALID
