"""Share a history's linearizability searches between the checkers that check it.

``linearizable`` and ``mutual-exclusion`` both search the lock ops of a lock history, and that
search is most of a check's time (a 1,000,000-op history: seconds each). A result is kept in the
``PairedHistory``'s memo by (model, options) and reused, so the search runs once per history. The
fenced-mutex model refines owned-mutex (every sequence legal for fenced-mutex is legal for
owned-mutex, holder for holder), so a *valid* fenced-mutex result also answers owned-mutex; an
invalid one does not (the tokens may be what failed), so that search still runs. The memo lives
and dies with the paired history: nothing is keyed on object identities.
"""

from __future__ import annotations

import dataclasses

from lockbench.checks import CheckResult
from lockbench.history import PairedHistory
from lockbench.options import CheckOptions

# For a model (key), the models whose valid verdict on the same history implies its own.
VALID_ALSO_ANSWERS: dict[str, tuple[str, ...]] = {"owned-mutex": ("fenced-mutex",)}


def _key(model: str, options: CheckOptions) -> tuple[str, str, str]:
    # The model is in the key already; the options' ``model`` only says how it was chosen.
    return ("linearizable-search", model, repr(dataclasses.replace(options, model=None)))


def lookup(
    history: PairedHistory, model: str, options: CheckOptions, checker: str
) -> CheckResult | None:
    """An earlier result that answers this search, relabelled for ``checker``; None if none."""
    earlier: CheckResult | None = history.memo.get(_key(model, options))
    if earlier is None:
        for stronger in VALID_ALSO_ANSWERS.get(model, ()):
            candidate: CheckResult | None = history.memo.get(_key(stronger, options))
            if candidate is not None and candidate.verdict == "valid":
                earlier = candidate
                break
    if earlier is None:
        return None
    stats = dict(earlier.stats)
    stats["shared_from"] = earlier.checker
    return dataclasses.replace(earlier, checker=checker, stats=stats)


def remember(
    history: PairedHistory, model: str, options: CheckOptions, result: CheckResult
) -> None:
    """Keep a search's result for the other checkers of this history."""
    history.memo[_key(model, options)] = result
