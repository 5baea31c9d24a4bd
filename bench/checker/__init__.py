"""Checkers: read only the history and decide whether the service kept its promises.

``run_checkers(history, names, options)`` runs the named checkers and composes their verdicts the
way Jepsen does (invalid beats unknown beats valid). Options are documented in docs/checkers.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.checker.availability import AvailabilityChecker
from bench.checker.fencing import FencingChecker
from bench.checker.linearizable import LinearizableChecker
from bench.checker.liveness import LivenessChecker
from bench.checker.lost_updates import LostUpdatesChecker
from bench.checker.mutual_exclusion import MutualExclusionChecker
from bench.checker.options import CheckOptions
from bench.checker.shared_searches import shared_searches
from bench.checker.watches import WatchesChecker
from bench.errors import ConfigError
from bench.history import Op, PairingError
from bench.protocols import Checker, CheckResult, Verdict, combine_verdicts

CHECKERS: dict[str, Checker] = {
    checker.name: checker
    for checker in (
        LinearizableChecker(),
        MutualExclusionChecker(),
        FencingChecker(),
        LostUpdatesChecker(),
        LivenessChecker(),
        AvailabilityChecker(),
        WatchesChecker(),
    )
}


def available_checkers() -> list[str]:
    """Checker names in the order they run."""
    return list(CHECKERS)


def run_checkers(
    history: Sequence[Op], names: Sequence[str], options: Mapping[str, Any]
) -> tuple[Verdict, dict[str, CheckResult]]:
    """Run each named checker on the history; raises ConfigError for an unknown name or option,
    or for a history whose calls do not pair up (a completion without an invocation)."""
    unknown = [name for name in names if name not in CHECKERS]
    if unknown:
        raise ConfigError(
            f"unknown checker(s) {', '.join(unknown)}; available: {', '.join(CHECKERS)}"
        )
    CheckOptions.from_mapping(options)  # fail on a bad option before any work
    results: dict[str, CheckResult] = {}
    with shared_searches():  # linearizable and mutual-exclusion search the lock ops once
        for name in dict.fromkeys(names):
            try:
                results[name] = CHECKERS[name].check(history, options)
            except PairingError as exc:
                raise ConfigError(f"malformed history: {exc}") from exc
    return combine_verdicts([r.verdict for r in results.values()]), results


__all__ = ["CHECKERS", "available_checkers", "run_checkers"]
