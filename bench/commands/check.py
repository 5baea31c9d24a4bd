"""``lockbench check``: run the checkers on a history file or a run directory.

Prints the results as JSON and exits 0 valid, 1 invalid, 3 unknown, 2 bad input. For a run
directory it reads ``history.jsonl`` (or ``history.edn``) and rewrites ``results.json`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.checker import available_checkers, run_checkers
from bench.checker.loading import load_history
from bench.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID, ConfigError
from bench.history import HistoryError, Op

HISTORY_NAMES = ("history.jsonl", "history.edn")
EXIT_BY_VERDICT = {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "unknown": EXIT_UNKNOWN}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a history (JSON Lines or Jepsen EDN) or a run directory",
        description=(
            "Check a history for linearizability, mutual exclusion, fencing, lost updates, "
            "liveness, availability and watch delivery. Exit codes: 0 valid, 1 invalid, "
            "3 unknown (a checker ran out of budget or lacked an option), 2 bad input."
        ),
    )
    parser.add_argument("path", type=Path, metavar="HISTORY_OR_RUN_DIR")
    parser.add_argument(
        "--model",
        help="linearizability model: mutex, owned-mutex, fenced-mutex, register, cas-register, "
        "kv (default: inferred from the ops)",
    )
    parser.add_argument(
        "--checkers",
        nargs="+",
        metavar="NAME",
        help="checkers to run, space- or comma-separated (default: those that apply): "
        f"{', '.join(available_checkers())}",
    )
    parser.add_argument("--time-budget", type=float, metavar="S", help="seconds per checker")
    parser.add_argument("--memory-budget", type=float, metavar="MIB", help="MiB per checker")
    parser.add_argument("--ttl", type=float, metavar="S", help="session TTL (liveness)")
    parser.add_argument("--failover", type=float, metavar="S", help="failover allowance")
    parser.add_argument("--margin", type=float, metavar="S", help="liveness margin")
    parser.add_argument(
        "--knossos-nil-reads", action="store_true", help="a read of nil matches any value"
    )
    parser.add_argument(
        "--failed-cas-observed",
        action="store_true",
        help="a failed cas ran and saw another value (Porcupine's etcd model)",
    )
    parser.add_argument(
        "--crashed-holders",
        choices=("release", "hold"),
        help="whether a crashed holder's session may expire (default release)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=YAML",
        help="any checker option, e.g. --option max_gap=3 (see docs/checkers.md)",
    )
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    flags = {
        "model": args.model,
        "time_budget_s": args.time_budget,
        "memory_budget_mb": args.memory_budget,
        "ttl": args.ttl,
        "failover": args.failover,
        "margin": args.margin,
        "crashed_holders": args.crashed_holders,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if args.knossos_nil_reads:
        options["knossos_nil_reads"] = True
    if args.failed_cas_observed:
        options["failed_cas_observed"] = True
    for item in args.option:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--option expects NAME=VALUE, got {item!r}")
        options[name] = yaml.safe_load(raw)
    return options


def default_checkers(history: list[Op], options: dict[str, Any]) -> list[str]:
    """The checkers that apply to what the history contains."""
    fs = {op.f for op in history if op.is_client}
    names = ["linearizable"] if fs & {"acquire", "read", "write", "cas"} else []
    if "acquire" in fs:
        names += ["mutual-exclusion", "fencing"]
        if options.get("ttl") is not None:
            names.append("liveness")
    if "res-write" in fs and "final-read" in fs:
        names.append("lost-updates")
    if "watch" in fs:
        names.append("watches")
    names.append("availability")
    return names


def _locate(path: Path) -> tuple[Path, Path | None]:
    """The history file, and the run directory if ``path`` is one."""
    if path.is_dir():
        for name in HISTORY_NAMES:
            if (path / name).is_file():
                return path / name, path
        raise ConfigError(f"{path}: a run directory must contain {' or '.join(HISTORY_NAMES)}")
    if not path.exists():
        raise ConfigError(f"{path}: no such history file or run directory")
    return path, None


def _write_results(run_dir: Path, document: dict[str, Any]) -> None:
    target = run_dir / "results.json"
    temporary = run_dir / ".results.json.tmp"
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, target)


def run(args: argparse.Namespace) -> int:
    history_path, run_dir = _locate(args.path)
    options = _options(args)
    try:
        history = load_history(history_path)
    except HistoryError as exc:
        raise ConfigError(f"bad history: {exc}") from exc
    names = (
        [name for item in args.checkers for name in item.split(",") if name]
        if args.checkers
        else default_checkers(history, options)
    )
    verdict, results = run_checkers(history, names, options)
    document = {
        "verdict": verdict,
        "checkers": {name: result.to_json() for name, result in results.items()},
    }
    if run_dir is not None:
        _write_results(run_dir, document)
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return EXIT_BY_VERDICT[verdict]
