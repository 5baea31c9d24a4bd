"""The one history pipeline: read a run's history, pair it once, run the checkers on it.

``lockbench run`` (after the run) and ``lockbench check RUN_DIR`` both call
``check_history_file``, so a stored run can never get a different verdict from the one the run
printed. Checkers are plug-ins found by entry point (``lockbench.checkers``); each receives the
same ``PairedHistory`` and the options parsed once, and their verdicts compose the way Jepsen's do
(invalid beats unknown beats valid). Options are documented in docs/checkers.md.

Valid must be earned: the ``stats`` checker runs on every history (unknown when nothing ran or
some op kind never succeeded), and a checker's ``valid`` becomes ``unknown`` when none of the op
kinds it declares in ``requires`` ever succeeded: it had nothing to check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.checker.loading import load_paired_history
from lockbench.checks import Checker, CheckResult, Verdict, combine_verdicts
from lockbench.errors import ConfigError
from lockbench.history import NEMESIS, HistoryError, Op, PairedHistory, PairingError
from lockbench.options import CheckOptions
from lockbench.plugins import CHECKERS, has_plugin, load_plugin, plugin_names

# Runs on every history (bench/checker/stats.py, found by its entry point like any checker).
STATS_CHECKER = "stats"
# A client's record that its own lease may have lapsed (docs/history.md).
LEASE_LOST = "lease-lost"


def available_checkers() -> list[str]:
    """The installed checkers' names, sorted (they run in the order a test names them)."""
    return sorted(plugin_names(CHECKERS))


def load_checker(name: str) -> Checker:
    """The checker an entry point names (a class is instantiated without arguments)."""
    found = load_plugin(CHECKERS, name)
    checker: Checker = found() if isinstance(found, type) else found
    return checker


# Run on every history with clock observations: a clock fault must have reached the servers
# for the run to be valid on its strength (bench/checker/fault_reach.py, docs/nemeses.md).
FAULT_REACH = "fault-reach"


def reach_checkers(history: Sequence[Op] | PairedHistory, names: Sequence[str]) -> list[str]:
    """``fault-reach`` when the history has clock observations and it is not named already."""
    ops = history.ops if isinstance(history, PairedHistory) else history
    clock = any(op.process == NEMESIS and op.f == "clock" for op in ops)
    installed = has_plugin(CHECKERS, FAULT_REACH)
    return [FAULT_REACH] if clock and installed and FAULT_REACH not in names else []


def run_checkers(
    history: Sequence[Op] | PairedHistory, names: Sequence[str], options: Mapping[str, Any]
) -> tuple[Verdict, dict[str, CheckResult]]:
    """Run each named checker on the history; raises ConfigError for an unknown name or option,
    or for a history whose calls do not pair up (a completion without an invocation)."""
    names = [*names, *reach_checkers(history, names)]
    unknown = [name for name in names if not has_plugin(CHECKERS, name)]
    if unknown:
        raise ConfigError(
            f"unknown checker(s) {', '.join(unknown)}; available: {', '.join(available_checkers())}"
        )
    parsed = CheckOptions.from_mapping(options)  # fail on a bad option before any work
    checkers = {name: load_checker(name) for name in dict.fromkeys([*names, STATS_CHECKER])}
    if not isinstance(history, PairedHistory):
        try:
            history = PairedHistory.of(history)
        except PairingError as exc:
            raise ConfigError(f"malformed history: {exc}") from exc
    succeeded = succeeded_kinds(history.ops)
    results = {
        name: require_evidence(checker.check(history, parsed), checker, succeeded)
        for name, checker in checkers.items()
    }
    return combine_verdicts([r.verdict for r in results.values()]), results


def succeeded_kinds(ops: Sequence[Op]) -> frozenset[str]:
    """The client op kinds with at least one ok completion (a client's own ``lease-lost``
    record is not an operation the service served)."""
    return frozenset(op.f for op in ops if op.is_client and op.type == "ok" and op.f != LEASE_LOST)


def require_evidence(
    result: CheckResult, checker: object, succeeded: frozenset[str]
) -> CheckResult:
    """A ``valid`` result becomes ``unknown`` when none of the op kinds the checker declares in
    ``requires`` succeeded (an empty tuple: any client op). A checker that declares nothing is
    taken at its word."""
    kinds: tuple[str, ...] | None = getattr(checker, "requires", None)
    if result.verdict != "valid" or kinds is None:
        return result
    if (succeeded & set(kinds)) if kinds else succeeded:
        return result
    wanted = " or ".join(kinds) if kinds else "client"
    reason = f"nothing to check: no {wanted} operation succeeded in the history"
    return dataclasses.replace(result, verdict="unknown", reason=reason)


def check_history_file(
    path: Path,
    names: Sequence[str] | Callable[[Sequence[Op]], Sequence[str]],
    options: Mapping[str, Any],
) -> tuple[Verdict, dict[str, CheckResult]]:
    """Read ``path`` (JSON Lines or Jepsen EDN), validate, pair and check it with ``names`` (or
    the names a function picks from the history read).

    Raises ConfigError naming the file and line for a history that cannot be read."""
    try:
        history = load_paired_history(path)  # validated and paired in one pass
    except HistoryError as exc:
        raise ConfigError(f"bad history: {exc}") from exc
    chosen = names(history.ops) if callable(names) else names
    return run_checkers(history, chosen, options)


def run_checker_options(ttl: object, checker_options: Mapping[str, Any]) -> dict[str, Any]:
    """The checkers' options for a run: its ``checker_options`` plus the session TTL it ran with
    (what both the runner and a re-check of its directory pass)."""
    options: dict[str, Any] = {} if ttl is None else {"ttl": ttl}
    options.update({str(k): v for k, v in checker_options.items()})
    return options
