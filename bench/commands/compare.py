"""``lockbench compare``: the same faults against several lock services, side by side.

Every backend runs every workload under every fault, on one cluster, one backend at a time
(``bench.runner.matrix``); ``compare.html`` (``reports.compare``) shows the verdicts with links
to each run's report, and the performance and lock-loss figures of the same runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.commands import summary
from bench.runner.matrix import (
    CellOutcome,
    MatrixSpec,
    parse_resource_modes,
    plan_matrix,
    remove_plan,
    run_matrix,
    split_names,
    write_summary,
)
from lockbench.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, ConfigError
from reports.compare import render_compare

COMPARE_DIR = "compare"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help=summary("compare"),
        description=(
            "Run a matrix of tests (backend x workload x fault) on one cluster, one backend at a "
            "time, each with the same seed and so the same fault schedule, and write "
            "<store>/compare/<timestamp>/compare.html: the verdicts, each linking to its run's "
            "report, and a performance table from the same runs (ok ops/s, acquire p50/p99, "
            "hand-offs/s, longest gap in ok ops during a fault, and how long a holder whose "
            "lock was taken over went on believing it held it). A cell whose fault cannot "
            "reach the backend says why instead of a verdict. Every name is checked before "
            "anything starts."
        ),
        epilog="Exit codes: 0 every cell that ran is valid, 1 some cell found anomalies, "
        "2 bad usage, 3 some cell is unknown or could not run. Docs: docs/comparison.md",
    )
    parser.add_argument(
        "--backends",
        default="reference",
        metavar="A,B",
        help="registered backends or package.module:Class (default: reference)",
    )
    parser.add_argument(
        "--nemesis",
        default="pause,partition,clock",
        metavar="F,G",
        help="faults, one per column: none, pause, partition, clock, kill, netem "
        "(default: pause,partition,clock)",
    )
    parser.add_argument(
        "--workload",
        default="mutex,lease-expiry",
        metavar="W,V",
        help="workloads (default: mutex,lease-expiry)",
    )
    parser.add_argument(
        "--resource-mode",
        default="auto",
        metavar="MODE[,BACKEND=MODE]",
        help="the protected resource per backend: auto (fenced when the backend's grants carry "
        "a fencing token, unfenced when they do not), fenced, unfenced, or both (a row of "
        "each); MODE for every backend, BACKEND=MODE for one (default: auto)",
    )
    parser.add_argument("--time-limit", type=float, default=20.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=1, help="the same for every cell (default 1)")
    parser.add_argument("--concurrency", type=int, default=6, metavar="N")
    parser.add_argument("--store", type=Path, default=Path("store"), help="default: ./store")
    parser.add_argument(
        "--prefix", default="lb", help="netns name prefix of the cluster (default: lb)"
    )
    parser.add_argument(
        "--subnet",
        default="10.77.0.0/24",
        help="netns subnet of the cluster (default 10.77.0.0/24)",
    )
    parser.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1: {args.concurrency}")
    backends = split_names(args.backends, "backends")
    resource_mode, resource_modes = parse_resource_modes(args.resource_mode, backends)
    spec = MatrixSpec(
        backends=backends,
        workloads=split_names(args.workload, "workload"),
        faults=split_names(args.nemesis, "nemesis"),
        time_limit=args.time_limit,
        seed=args.seed,
        concurrency=args.concurrency,
        netns_prefix=args.prefix,
        subnet=args.subnet,
        resource_mode=resource_mode,
        resource_modes=resource_modes,
    )
    directory = args.store / COMPARE_DIR / time.strftime("%Y%m%dT%H%M%S")
    try:
        plan = plan_matrix(spec, directory)
    except ConfigError:
        remove_plan(directory)
        raise
    refused = sum(1 for cell in plan.cells if cell.config is None)
    print(
        f"lockbench: compare: {len(plan.cells)} cell(s) on the {plan.runtime} runtime "
        f"({refused} cannot run here); {directory}"
    )

    def progress(outcome: CellOutcome) -> None:
        cell = outcome.cell
        shown = outcome.verdict or "not run"
        reason = f" ({outcome.reason})" if outcome.reason else ""
        print(
            f"lockbench: {cell.backend} ({cell.resource_mode}) {cell.workload} {cell.fault}: "
            f"{shown}{reason}"
        )
        done.append(outcome)
        write_summary(directory, spec, done, plan.rows)
        render_compare(directory, args.store)

    done: list[CellOutcome] = []
    outcomes = run_matrix(plan, args.store, on_cell=progress)
    write_summary(directory, spec, outcomes, plan.rows)
    page = render_compare(directory, args.store)
    print(f"lockbench: compare page {page}")
    verdicts = [o.verdict for o in outcomes]
    if "invalid" in verdicts:
        return EXIT_INVALID
    if any(v != "valid" for v in verdicts):
        return EXIT_UNKNOWN
    return EXIT_VALID
