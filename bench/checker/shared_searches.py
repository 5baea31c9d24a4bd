"""Share a history's linearizability searches between the checkers of one ``run_checkers`` call.

``linearizable`` and ``mutual-exclusion`` both search the lock ops of a lock history, and that
search is most of a check's time (a 1,000,000-op history: seconds each). Inside
``shared_searches()`` a result is kept by (history identity, model, options) and reused, so the
search runs once. The fenced-mutex model refines owned-mutex (every sequence legal for fenced-mutex
is legal for owned-mutex, holder for holder), so a *valid* fenced-mutex result also answers
owned-mutex; an invalid one does not (the tokens may be what failed), so that search still runs.
Outside the context nothing is kept: a history object's identity means nothing once it is freed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from bench.checker.options import CheckOptions
from bench.history import Op
from bench.protocols import CheckResult

# For a model (key), the models whose valid verdict on the same history implies its own.
VALID_ALSO_ANSWERS: dict[str, tuple[str, ...]] = {"owned-mutex": ("fenced-mutex",)}


@dataclass(frozen=True, slots=True)
class _Entry:
    history: Sequence[Op]  # held so the identity in the key cannot be reused while cached
    result: CheckResult


_Key = tuple[int, str, str]
_CACHE: ContextVar[dict[_Key, _Entry] | None] = ContextVar(
    "lockbench_shared_searches", default=None
)


@contextmanager
def shared_searches() -> Iterator[None]:
    """Within this block, checkers reuse each other's searches of the same history object."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _key(history: Sequence[Op], model: str, options: CheckOptions) -> _Key:
    # The model is in the key already; the options' ``model`` only says how it was chosen.
    return (id(history), model, repr(dataclasses.replace(options, model=None)))


def lookup(
    history: Sequence[Op], model: str, options: CheckOptions, checker: str
) -> CheckResult | None:
    """An earlier result that answers this search, relabelled for ``checker``; None if none."""
    cache = _CACHE.get()
    if cache is None:
        return None
    entry = cache.get(_key(history, model, options))
    if entry is None:
        for stronger in VALID_ALSO_ANSWERS.get(model, ()):
            candidate = cache.get(_key(history, stronger, options))
            if candidate is not None and candidate.result.verdict == "valid":
                entry = candidate
                break
    if entry is None or entry.history is not history:
        return None
    earlier = entry.result
    stats = dict(earlier.stats)
    stats["shared_from"] = earlier.checker
    return dataclasses.replace(earlier, checker=checker, stats=stats)


def remember(history: Sequence[Op], model: str, options: CheckOptions, result: CheckResult) -> None:
    """Keep a search's result for the other checkers of this ``shared_searches`` block."""
    cache = _CACHE.get()
    if cache is not None:
        cache[_key(history, model, options)] = _Entry(history, result)
