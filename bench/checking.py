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

from bench.checker.loading import is_edn, load_paired_history
from bench.checker.partition import BUCKETS, MAX_GROUP_RECORDS, WORKERS, partition_history
from lockbench.checks import (
    Checker,
    CheckResult,
    KeyedChecker,
    StreamingChecker,
    Verdict,
    combine_verdicts,
)
from lockbench.errors import ConfigError
from lockbench.history import (
    NEMESIS,
    HistoryError,
    Op,
    PairedHistory,
    PairingError,
)
from lockbench.options import CheckOptions
from lockbench.plugins import CHECKERS, has_plugin, load_plugin, plugin_names

# A JSON Lines history larger than this (~3.5 million records, ~1 GiB as ops in memory) is checked
# a group of keys at a time when its checkers allow it (docs/checkers.md).
PARTITION_ABOVE_BYTES = 512 * 1024 * 1024
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
    _refuse_unknown(names)
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
    *,
    partition_above_bytes: int = PARTITION_ABOVE_BYTES,
) -> tuple[Verdict, dict[str, CheckResult]]:
    """Read ``path`` (JSON Lines or Jepsen EDN), validate, pair and check it with ``names`` (or
    the names a function picks from the history read).

    A JSON Lines file larger than ``partition_above_bytes`` is checked a group of keys at a time
    (``check_partitioned``) when every checker can be; otherwise it is read into memory.
    Raises ConfigError naming the file and line for a history that cannot be read."""
    if _large_json_lines(path, partition_above_bytes):
        checked = check_partitioned(path, names, options)
        if checked is not None:
            return checked
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


def check_partitioned(
    path: Path,
    names: Sequence[str] | Callable[[Sequence[Op]], Sequence[str]],
    options: Mapping[str, Any],
    *,
    max_group_records: int = MAX_GROUP_RECORDS,
    buckets: int = BUCKETS,
    workers: int = WORKERS,
) -> tuple[Verdict, dict[str, CheckResult]] | None:
    """Check a JSON Lines history without holding it in memory: one pass validates it, feeds
    the streaming checkers and copies each key's records to a temporary directory (two
    processes reading side by side when ``workers`` > 1); then each group of keys is read back
    and checked by the per-key checkers (in ``workers`` processes),
    whose results are merged (bench/checker/partition.py). The verdicts are those of
    ``run_checkers`` on the history in memory, except that a key with more than
    ``max_group_records`` records is ``unknown`` for the per-key checkers (it is never loaded).
    None when a checker can only judge the history in memory (none of ``merge`` or
    ``accumulate``): the caller then reads it whole."""
    parsed = CheckOptions.from_mapping(options)  # fail on a bad option before any work
    named = None if callable(names) else [*names]
    wanted = (
        [*named, STATS_CHECKER, *([FAULT_REACH] if has_plugin(CHECKERS, FAULT_REACH) else [])]
        if named is not None
        else available_checkers()
    )
    _refuse_unknown(wanted)
    checkers = {name: load_checker(name) for name in dict.fromkeys(wanted)}
    if named is not None and not all(_partitionable(checkers[n]) for n in named):
        return None
    accumulators = {
        name: checker.accumulate(parsed)
        for name, checker in checkers.items()
        if isinstance(checker, StreamingChecker)
    }
    import tempfile  # lazily: ~20 ms of every check's start-up otherwise

    with tempfile.TemporaryDirectory(prefix="lockbench-partition-") as workdir:
        try:
            part = partition_history(
                path,
                Path(workdir),
                list(accumulators.values()),
                max_group_records=max_group_records,
                buckets=buckets,
                fork_router=workers > 1,
            )
        except HistoryError as exc:
            raise ConfigError(f"bad history: {exc}") from exc
        whole = part.whole
        seen = sorted([*whole.sample_ops, *part.nemesis_ops], key=lambda op: op.index)
        chosen = list(names(seen) if callable(names) else names)
        chosen += reach_checkers(part.nemesis_ops, chosen)
        _refuse_unknown(chosen)
        order = list(dict.fromkeys([*chosen, STATS_CHECKER]))
        if not all(name in accumulators or _partitionable(checkers[name]) for name in order):
            return None
        keyed = {
            name: checker
            for name in order
            if name not in accumulators and isinstance(checker := checkers[name], KeyedChecker)
        }
        parts = part.check_groups(keyed, parsed, workers=workers)
        succeeded = succeeded_kinds(whole.sample_ops)
        results = {}
        for name in order:
            checker = checkers[name]
            if name in accumulators:
                result = accumulators[name].result(whole)
            else:
                result = keyed[name].merge(parts[name])
            results[name] = require_evidence(result, checker, succeeded)
    return combine_verdicts([r.verdict for r in results.values()]), results


def _large_json_lines(path: Path, above_bytes: int) -> bool:
    try:
        return path.stat().st_size > above_bytes and not is_edn(path)
    except OSError:
        return False  # the in-memory reader names the problem


def _partitionable(checker: Checker) -> bool:
    return isinstance(checker, StreamingChecker | KeyedChecker)


def _refuse_unknown(names: Sequence[str]) -> None:
    unknown = [name for name in names if not has_plugin(CHECKERS, name)]
    if unknown:
        raise ConfigError(
            f"unknown checker(s) {', '.join(unknown)}; available: {', '.join(available_checkers())}"
        )
