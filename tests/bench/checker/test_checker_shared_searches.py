"""linearizable and mutual-exclusion on one lock history search its lock ops once (issue 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import bench.checker.linearizable as linearizable
from bench.checking import run_checkers
from lockbench.history import PairedHistory
from lockbench.options import CheckOptions
from tests.bench.checker.checker_histories import history
from tests.support.histories import lock_history

BOTH = ["linearizable", "mutual-exclusion"]


@pytest.fixture
def searched_models(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model of every key search that really runs (the real search, counted)."""
    models: list[str] = []
    real: Callable[..., Any] = linearizable._search_keys

    def counted(history: Any, options: Any, checker: str, model: Any, budget: Any) -> Any:
        models.append(model.name)
        return real(history, options, checker, model, budget)

    monkeypatch.setattr(linearizable, "_search_keys", counted)
    return models


def tokenless(ops: list[Any]) -> list[Any]:
    """The same history from a backend without fencing tokens (owned-mutex is inferred)."""
    return [
        msgspec.structs.replace(op, value=None) if op.f == "acquire" and op.type == "ok" else op
        for op in ops
    ]


def test_the_same_model_is_searched_once_and_both_checkers_get_its_result(
    searched_models: list[str],
) -> None:
    ops = tokenless(lock_history(seed=3, ops=2_000, locks=4, processes=6, info_rate=0.02))
    verdict, results = run_checkers(ops, BOTH, {})
    assert searched_models == ["owned-mutex"]
    assert verdict == "valid"
    assert results["mutual-exclusion"].stats["model"]["shared_from"] == "linearizable"
    assert results["mutual-exclusion"].stats["model"]["model"] == "owned-mutex"


def test_a_valid_fenced_mutex_result_answers_owned_mutex(searched_models: list[str]) -> None:
    ops = lock_history(seed=3, ops=2_000, locks=4, processes=6, info_rate=0.02)
    verdict, results = run_checkers(ops, BOTH, {})
    assert searched_models == ["fenced-mutex"]
    assert verdict == "valid"
    assert results["mutual-exclusion"].checker == "mutual-exclusion"


def test_an_invalid_shared_result_is_shared_with_its_window(searched_models: list[str]) -> None:
    ops = tokenless(
        lock_history(seed=2, ops=2_000, locks=4, processes=6, info_rate=0.01, bug_rate=0.01)
    )
    alone = {name: run_checkers(ops, [name], {})[1][name] for name in BOTH}
    searched_models.clear()
    verdict, results = run_checkers(ops, BOTH, {})
    assert searched_models == ["owned-mutex"]
    assert verdict == "invalid"
    for name in BOTH:
        assert results[name].verdict == alone[name].verdict == "invalid"
        assert results[name].window == alone[name].window
        assert results[name].anomalies[0] == alone[name].anomalies[0]


def test_tokens_out_of_order_fail_fenced_mutex_but_mutual_exclusion_still_searches(
    searched_models: list[str],
) -> None:
    ops = history(
        (0, "invoke", "acquire", "L", None),
        (0, "ok", "acquire", "L", 7),
        (0, "invoke", "release", "L", None),
        (0, "ok", "release", "L", None),
        (1, "invoke", "acquire", "L", None),
        (1, "ok", "acquire", "L", 3),
    )
    verdict, results = run_checkers(ops, BOTH, {})
    assert searched_models == ["fenced-mutex", "owned-mutex"]
    assert results["linearizable"].verdict == "invalid"
    assert results["mutual-exclusion"].verdict == "valid"
    assert verdict == "invalid"


def test_different_options_or_separate_calls_search_again(searched_models: list[str]) -> None:
    ops = tokenless(lock_history(seed=5, ops=500, locks=2, processes=4, info_rate=0.02))
    run_checkers(ops, ["linearizable"], {})
    run_checkers(ops, ["mutual-exclusion"], {})
    assert searched_models == ["owned-mutex", "owned-mutex"]
    searched_models.clear()
    paired = PairedHistory.of(ops)
    linearizable.check_linearizable(paired, CheckOptions(crashed_holders="hold"))
    linearizable.check_linearizable(paired, CheckOptions())
    linearizable.check_linearizable(paired, CheckOptions(), checker="mutual-exclusion")
    linearizable.check_linearizable(PairedHistory.of(ops), CheckOptions())  # another history
    assert searched_models == ["owned-mutex", "owned-mutex", "owned-mutex"]
