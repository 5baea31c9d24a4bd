"""``lockbench``: run tests, manage clusters, check histories, build reports."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lockbench.errors import EXIT_USAGE, BenchError

# Subcommand modules, in the order they appear in --help. Each has ``register(subparsers)`` that
# adds its parser and sets ``func`` (args -> exit code).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "bench.commands.run",
    "bench.commands.cluster",
    "bench.commands.check",
    "bench.commands.report",
    "bench.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockbench",
        description=(
            "A Jepsen-style correctness bench for distributed lock services: deploy a backend "
            "to five nodes, drive it with a workload under faults, check the history for "
            "mutual exclusion, fencing, linearizability and liveness, and write an HTML report."
        ),
        epilog="Exit codes: 0 valid, 1 anomalies found, 2 bad usage or configuration, "
        "3 unknown, 4 cluster could not be set up. Docs: docs/index.md",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except BenchError as exc:
        print(f"lockbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lockbench: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
