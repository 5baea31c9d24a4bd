"""``lockbench``: run tests, manage clusters, check histories, build reports."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bench.commands import SUBCOMMANDS
from lockbench.errors import EXIT_USAGE, BenchError


def chosen_subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top-level parser
    has only flags), if that is a subcommand."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The CLI's parser. Only the subcommand ``argv`` names gets its full parser, so only its
    module (and what that imports) is loaded: the one place the project imports its own modules
    lazily, on purpose, for start-up time (docs/architecture.md). The others are listed with their
    one-line help; without a subcommand (``--help``) nothing else is imported."""
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
    chosen = chosen_subcommand(argv)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module_name).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def configure_logging(*, verbose: bool) -> None:
    """INFO (DEBUG with ``-v``) with time and logger name, to stderr. When nothing the chosen
    subcommand loaded uses logging (``lockbench check``), there is nothing to configure, and
    importing the logging package would be about 6 ms of that command's start-up
    (docs/performance.md), so it is not imported then."""
    if not verbose and "logging" not in sys.modules:
        return
    import logging  # the standard library's, imported here on purpose (see above)

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    configure_logging(verbose=args.verbose)
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
