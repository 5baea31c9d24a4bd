"""``lockbench check``: run the checkers on a history file or a run directory, or on many.

For one history it prints the results as JSON and exits 0 valid, 1 invalid, 3 unknown, 2 bad
input. Given several paths, or a directory of runs or history files, it checks them all in this
one process and prints a line per history and a summary; the exit code is the worst outcome
(invalid, then bad input, then unknown, then valid). For a run
directory it reads ``history.jsonl`` (or ``history.edn``), checks it with the checkers and options
the run's ``test.yaml`` names (so a re-check judges what the run judged), and rewrites
``results.json`` there through lockbench.run_dir (as the runner does), keeping the run's
``errors`` and ``run`` notes. Reading, pairing and checking is bench/checking.py's
``check_history_file``, the function the runner calls too. A run whose notes say it never
started or never finished is never re-judged valid (``lockbench.run_dir.never_valid_reason``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.checking import available_checkers, check_history_file, run_checker_options
from bench.commands import summary
from lockbench.checks import CheckResult, Verdict, combine_verdicts
from lockbench.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_USAGE, EXIT_VALID, ConfigError
from lockbench.history import Op
from lockbench.plugins import WORKLOADS, has_plugin, load_plugin
from lockbench.run_dir import (
    TEST_FILE,
    RunDirProblem,
    never_valid_reason,
    read_results,
    read_test_data,
    write_results,
)

HISTORY_NAMES = ("history.jsonl", "history.edn")
HISTORY_SUFFIXES = (".jsonl", ".edn")
EXIT_BY_VERDICT = {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "unknown": EXIT_UNKNOWN}
# Many histories: the exit code of the worst one, worst first.
EXIT_SEVERITY = (EXIT_INVALID, EXIT_USAGE, EXIT_UNKNOWN, EXIT_VALID)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help=summary("check"),
        description=(
            "Check a history for linearizability, mutual exclusion, fencing, lost updates, "
            "liveness, availability and watch delivery. Exit codes: 0 valid, 1 invalid, "
            "3 unknown (a checker ran out of budget or lacked an option), 2 bad input."
        ),
    )
    parser.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="HISTORY_OR_RUN_DIR",
        help="a history file or run directory; several, or a directory of them, are checked "
        "one after another in this process, a line each",
    )
    parser.add_argument(
        "--model",
        help="linearizability model: mutex, owned-mutex, fenced-mutex, register, cas-register, "
        "kv (default: inferred from the ops)",
    )
    parser.add_argument(
        "--checkers",
        nargs="+",
        metavar="NAME",
        help="checkers to run, space- or comma-separated (default: a run directory's test.yaml "
        "checkers, else its workload's, else those that apply to the history): "
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
        import yaml  # third-party, lazily: only --option values need it (start-up time)

        options[name] = yaml.safe_load(raw)
    return options


def default_checkers(history: Sequence[Op], options: Mapping[str, Any]) -> list[str]:
    """The checkers that apply to what the history contains; a ``model`` forces linearizable."""
    fs = {op.f for op in history if op.is_client}
    model_ops = fs & {"acquire", "release", "owner", "read", "write", "cas"}
    names = ["linearizable"] if model_ops or options.get("model") is not None else []
    if fs & {"acquire", "release"}:
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


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What a run directory's test.yaml says about checking: the checkers it names (or its
    workload's defaults; None if neither is known) and the options the run checked with."""

    checkers: tuple[str, ...] | None = None
    options: Mapping[str, object] = field(default_factory=dict)


def run_settings(run_dir: Path) -> RunSettings:
    """Read ``checkers``, ``workload``, ``checker_options`` and ``ttl`` from test.yaml.

    Only these keys are read (not the whole test validated): re-checking an old run must not
    depend on its backend or runtime still being available here. A missing test.yaml (a run
    directory from another tool) gives no settings.
    """
    path = run_dir / TEST_FILE
    try:
        data = read_test_data(run_dir)
    except RunDirProblem as exc:
        raise ConfigError(f"{path}: cannot read the run's test file: {exc}") from exc
    if data is None:
        return RunSettings()
    checker_options = data.get("checker_options") or {}
    if not isinstance(checker_options, Mapping):
        raise ConfigError(f"{path}: checker_options must be a mapping of option names to values")
    # the same options the runner passed (bench/runner/test_run.py)
    options = run_checker_options(data.get("ttl"), checker_options)
    named = data.get("checkers")
    if named is not None:
        if not isinstance(named, list | tuple) or not all(isinstance(n, str) for n in named):
            raise ConfigError(f"{path}: checkers must be a list of checker names")
        return RunSettings(tuple(named), options)
    return RunSettings(_workload_checkers(data.get("workload")), options)


def _workload_checkers(workload: object) -> tuple[str, ...] | None:
    """The named workload's default checkers; None for an unknown or unavailable workload."""
    if not isinstance(workload, str) or not has_plugin(WORKLOADS, workload):
        return None
    try:
        cls = load_plugin(WORKLOADS, workload)
    except ConfigError:
        return None
    checkers = getattr(cls, "default_checkers", None)
    return None if checkers is None else tuple(checkers)


def _previous_notes(run_dir: Path) -> tuple[list[str], dict[str, object] | None]:
    """The ``errors`` and ``run`` keys of the run's results.json, kept across a re-check."""
    try:
        previous = read_results(run_dir)
    except RunDirProblem:
        return [], None  # a damaged file that is about to be replaced
    if previous is None:
        return [], None
    return list(previous.errors), None if previous.notes is None else dict(previous.notes)


def _checker_names(
    args: argparse.Namespace, settings: RunSettings, options: dict[str, Any]
) -> Sequence[str] | Callable[[Sequence[Op]], Sequence[str]]:
    """``--checkers``, else the run's test.yaml, else what the history contains."""
    if args.checkers:
        return [name for item in args.checkers for name in item.split(",") if name]
    named = settings.checkers
    if named is None:
        return lambda history: default_checkers(history, options)
    if args.model is not None and "linearizable" not in named:
        return [*named, "linearizable"]  # --model asks for the linearizability check
    return named


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    flags = _options(args)  # a bad flag fails before anything is read
    if len(paths) == 1 and not _is_collection(paths[0]):
        return _run_one(args, paths[0], flags)
    return _run_many(args, _expand(paths), flags)


def _run_one(args: argparse.Namespace, path: Path, flags: dict[str, Any]) -> int:
    verdict, results, reason = _check(args, path, flags)
    document: dict[str, Any] = {
        "verdict": verdict,
        "checkers": {name: result.to_json() for name, result in results.items()},
    }
    if reason is not None:
        document["reason"] = reason
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return EXIT_BY_VERDICT[verdict]


def _check(
    args: argparse.Namespace, path: Path, flags: dict[str, Any]
) -> tuple[Verdict, dict[str, CheckResult], str | None]:
    """Check one history file or run directory (rewriting a run directory's results.json); the
    reason is why a run that never started or finished cannot be valid."""
    history_path, run_dir = _locate(path)
    settings = run_settings(run_dir) if run_dir is not None else RunSettings()
    options = {**settings.options, **flags}  # flags override the test file
    names = _checker_names(args, settings, options)
    verdict, results = check_history_file(history_path, names, options)
    errors, notes = _previous_notes(run_dir) if run_dir is not None else ([], None)
    reason = never_valid_reason(notes)
    if reason is not None:  # a run that never started or finished is never valid
        verdict = combine_verdicts([verdict, "unknown"])
    if run_dir is not None:
        write_results(run_dir, verdict, results, errors=errors, notes=notes)
    return verdict, results, reason


def _is_collection(path: Path) -> bool:
    """A directory that is not itself a run directory: the runs and histories inside it."""
    return path.is_dir() and not any((path / name).is_file() for name in HISTORY_NAMES)


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Every history to check: files and run directories as given, and the run directories and
    history files directly inside a directory of them (sorted; links to one already listed,
    such as a store's ``latest``, once)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if _is_collection(path):
            found = [
                entry
                for entry in sorted(path.iterdir(), key=lambda e: (e.is_symlink(), e.name))
                if (entry.is_dir() and not _is_collection(entry))
                or (entry.is_file() and entry.suffix in HISTORY_SUFFIXES)
            ]
            if not found:
                raise ConfigError(f"{path}: no run directories or history files in it")
        else:
            found = [path]
        for entry in found:
            real = entry.resolve()
            if real not in seen:
                seen.add(real)
                out.append(entry)
    return out


def _run_many(args: argparse.Namespace, paths: Sequence[Path], flags: dict[str, Any]) -> int:
    started = time.perf_counter()
    counts: dict[str, int] = {"valid": 0, "invalid": 0, "unknown": 0, "bad input": 0}
    worst = EXIT_VALID
    for path in paths:
        one = time.perf_counter()
        try:
            verdict, results, reason = _check(args, path, flags)
        except ConfigError as exc:
            counts["bad input"] += 1
            code = EXIT_USAGE
            line = f"{'error':<8} {path}  {exc}"
        else:
            counts[verdict] += 1
            code = EXIT_BY_VERDICT[verdict]
            line = f"{verdict:<8} {path}  {reason + '; ' if reason else ''}{_describe(results)}"
        seconds = time.perf_counter() - one
        print(f"{line}  ({seconds * 1e3:.2f} ms)", flush=True)
        if EXIT_SEVERITY.index(code) < EXIT_SEVERITY.index(worst):
            worst = code
    total = time.perf_counter() - started
    summary_line = ", ".join(f"{n} {what}" for what, n in counts.items() if n or what == "valid")
    print(f"{len(paths)} histories: {summary_line} ({total:.2f} s)")
    return worst


def _describe(results: Mapping[str, CheckResult]) -> str:
    """Each checker's verdict, with the first anomaly or the reason where it is not valid."""
    parts = []
    for name, result in results.items():
        part = f"{name} {result.verdict}"
        if result.verdict == "invalid" and result.anomalies:
            part += f" ({result.anomalies[0].explanation})"
        elif result.verdict == "unknown" and result.reason:
            part += f" ({result.reason})"
        parts.append(part)
    return "; ".join(parts)
