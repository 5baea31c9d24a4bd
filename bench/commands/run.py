"""``lockbench run [TEST.yaml] [flags]``: run one test and store everything it learned."""

from __future__ import annotations

import argparse
import sys
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
from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test

# flag destination -> test-file key, for the flags that override one key each
FLAG_KEYS: dict[str, str] = {
    "name": "name",
    **CLUSTER_FLAG_KEYS,
    "backend": "backend",
    "workload": "workload",
    "time_limit": "time_limit",
    "concurrency": "concurrency",
    "rate": "rate",
    "op_timeout": "op_timeout",
    "ttl": "ttl",
    "seed": "seed",
    "resource_mode": "resource_mode",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help=summary("run"),
        description=(
            "Run one Jepsen-style test: set up the cluster, start the lock service, drive it "
            "with the workload's client processes while the nemesis injects faults, heal, tear "
            "down, check the history and write store/<name>/<timestamp>/. Flags override keys "
            "of the test file. Without a file, the packaged default test is run "
            "(bench/runner/default.yaml; tests/configs/default.yaml in a checkout). "
            "Ctrl-C stops the test early (heal, tear down, check); a second Ctrl-C abandons "
            "in-flight operations."
        ),
        epilog="Exit codes: 0 valid, 1 anomalies found, 2 bad usage or configuration, "
        "3 unknown, 4 cluster could not be set up. Test file reference: docs/running.md",
    )
    parser.add_argument("test", nargs="?", type=Path, help="the test file (YAML)")
    add_store_flag(parser)
    parser.add_argument(
        "--leave-running",
        action="store_true",
        help="do not stop the service or take the cluster down after the test",
    )
    parser.add_argument("--name", help="test name (the store directory)")
    add_cluster_flags(
        parser,
        ["auto", "netns", "local", "ssh", "vagrant", "none"],
        "run on the cluster this inventory file describes",
    )
    parser.add_argument(
        "--backend", help="a registered backend (reference, memory) or package.module:Class"
    )
    parser.add_argument(
        "--workload",
        help="mutex, fenced-counter, lease-expiry, watch or follower-read",
    )
    parser.add_argument("--time-limit", type=float, metavar="SECONDS")
    parser.add_argument("--concurrency", type=int, metavar="N", help="client processes")
    parser.add_argument("--rate", type=float, metavar="OPS", help="target ops/s over all clients")
    parser.add_argument("--op-timeout", type=float, metavar="SECONDS", help="per-op timeout")
    parser.add_argument("--ttl", type=float, metavar="SECONDS", help="lock session TTL")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resource-mode", choices=["fenced", "unfenced"])
    parser.add_argument("--no-nemesis", action="store_true", help="run without faults")
    parser.add_argument(
        "--checkers", metavar="A,B", help="comma-separated checker names (default: workload's)"
    )
    add_set_flag(
        parser,
        "override any key, dotted for nested ones (workload_options.locks=5); VALUE is YAML",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no live display even on a terminal"
    )
    parser.set_defaults(func=run_command)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as test-file keys (``--set`` last, so it wins)."""
    derived: dict[str, Any] = {}
    if args.no_nemesis:
        derived["nemesis"] = []
    if args.checkers:
        derived["checkers"] = [c.strip() for c in args.checkers.split(",") if c.strip()]
    return flag_overrides(args, FLAG_KEYS, derived)


def run_command(args: argparse.Namespace) -> int:
    config = load_test_config(args.test, overrides_from_args(args))
    options = RunOptions(
        store=args.store,
        leave_running=args.leave_running,
        live_progress=False if args.no_progress else None,
    )
    outcome = run_test(config, options)
    stats = outcome.stats
    print(
        f"lockbench: {config.name}: verdict {outcome.verdict} "
        f"(exit {outcome.exit_code}); ops ok {stats.ok} fail {stats.fail} info {stats.info}"
        + ("; interrupted" if outcome.interrupted else "")
    )
    print(f"lockbench: run directory {outcome.run_dir}")
    for error in outcome.errors:
        print(f"lockbench: error: {error}", file=sys.stderr)
    return outcome.exit_code
