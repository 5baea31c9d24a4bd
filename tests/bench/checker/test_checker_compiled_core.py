"""The compiled search core gives exactly the pure-Python search's outcome.

Same verdict, steps, cache size and stuck op, for every pass the checker runs (plain memo with a
step limit, the relaxed refutation, dominance) on random small histories (where the brute-force
oracle also answers) and on simulated histories of hundreds of ops. Histories the core cannot
represent fall back to Python with the same answer.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import given

from bench.checker import native
from bench.checker.budget import Budget, BudgetExceeded
from bench.checker.linearizable import check_linearizable, ops_by_key
from bench.checker.models import Model, MutexModel, make_model
from bench.checker.operations import LinOp
from bench.checker.wgl import SearchOutcome, StepLimitReached, search
from lockbench.history import Op
from lockbench.options import CheckOptions
from tests.bench.checker.checker_brute_force import brute_force_linearizable
from tests.bench.checker.test_checker_engine_properties import PROPERTY_SETTINGS, histories
from tests.support.histories import lock_history, register_history

pytestmark = [
    # Property tests over many generated histories: seconds each, so the process lane runs them.
    pytest.mark.slow,
    pytest.mark.skipif(
        not native.available(), reason="the compiled core is not built (no C compiler at install)"
    ),
]

VARIANTS: list[dict[str, Any]] = [
    {"dominance": False},
    {"dominance": True},
    {"reuse_optional": True},
    {"dominance": False, "twins": True},
    {"dominance": True, "twins": True},
    {"reuse_optional": True, "twins": True},
]


def _outcome(
    ops: list[LinOp], model: Model, variant: dict[str, Any], compiled: bool, **extra: Any
) -> SearchOutcome | str:
    twins = model.interchangeable if variant.get("twins") else None
    encoded = native.encode(ops, model, twins) if compiled else None
    if compiled:
        assert encoded is not None
    try:
        return search(
            ops,
            model.step,
            extra.pop("initial", model.initial()),
            None,
            reuse_optional=variant.get("reuse_optional", False),
            dominance=variant.get("dominance", True),
            interchangeable=twins,
            native=encoded,
            **extra,
        )
    except StepLimitReached as exc:
        return f"step limit, stuck {exc.stuck}"


def _same(history: list[Op], options: CheckOptions, max_steps: int | None = None) -> None:
    model = make_model(options.model or "", options)
    for ops in ops_by_key(history, model).values():
        for variant in VARIANTS:
            extra = {} if max_steps is None else {"max_steps": max_steps}
            python = _outcome(ops, model, variant, False, **extra)
            compiled = _outcome(ops, model, variant, True, **extra)
            assert compiled == python, (variant, ops)


def _agree_small(history: list[Op], options: CheckOptions) -> None:
    _same(history, options)
    model = make_model(options.model or "", options)
    for ops in ops_by_key(history, model).values():
        encoded = native.encode(ops, model, model.interchangeable)
        got = search(ops, model.step, model.initial(), None, native=encoded)
        assert got.linearizable == brute_force_linearizable(ops, model.step, model.initial())


@pytest.mark.parametrize(
    ("model", "kind", "switches"),
    [
        ("mutex", "lock", {}),
        ("owned-mutex", "lock", {}),
        ("fenced-mutex", "lock", {}),
        ("fenced-mutex", "lock", {"crashed_holders": "hold"}),
        ("register", "register", {}),
        ("register", "register", {"knossos_nil_reads": True}),
        ("cas-register", "cas", {"failed_cas_observed": True}),
        ("kv", "cas", {}),
    ],
)
def test_compiled_core_matches_python_on_random_small_histories(
    model: str, kind: str, switches: dict[str, Any]
) -> None:
    options = CheckOptions(model=model, **switches)

    @PROPERTY_SETTINGS
    @given(histories(kind, keys=2 if model == "kv" else 1, max_calls=7))
    def run(history: list[Op]) -> None:
        _agree_small(history, options)

    run()


@pytest.mark.parametrize("model", ["cas-register", "owned-mutex"])
def test_compiled_core_matches_python_on_info_heavy_histories(model: str) -> None:
    options = CheckOptions(model=model, failed_cas_observed=model == "cas-register")

    @PROPERTY_SETTINGS
    @given(histories("lock" if model == "owned-mutex" else "cas", max_calls=7, info_heavy=True))
    def run(history: list[Op]) -> None:
        _agree_small(history, options)

    run()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("model", ["owned-mutex", "fenced-mutex", "mutex"])
def test_compiled_core_matches_python_on_simulated_lock_histories(seed: int, model: str) -> None:
    bug = 0.02 if seed % 2 else 0.0
    history = lock_history(seed=seed, ops=600, locks=2, processes=5, info_rate=0.05, bug_rate=bug)
    _same(history, CheckOptions(model=model))
    _same(history, CheckOptions(model=model), max_steps=500)


@pytest.mark.parametrize("seed", range(6))
def test_compiled_core_matches_python_on_simulated_register_histories(seed: int) -> None:
    bug = 0.01 if seed % 2 else 0.0
    history = register_history(seed=seed, ops=600, processes=5, info_rate=0.1, bug_rate=bug)
    options = CheckOptions(model="cas-register", failed_cas_observed=True)
    _same(history, options)
    _same(history, options, max_steps=300)


def test_checker_verdicts_and_windows_match_the_pure_python_checker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole checks (three passes, window minimisation) give the same result either way."""
    cases = [
        (lock_history(seed=s, ops=800, locks=3, bug_rate=0.01), CheckOptions()) for s in range(4)
    ] + [
        (
            register_history(seed=s, ops=800, info_rate=0.05, bug_rate=0.005),
            CheckOptions(model="cas-register"),
        )
        for s in range(4)
    ]
    compiled = [check_linearizable(h, o) for h, o in cases]
    monkeypatch.setenv("LOCKBENCH_PURE_PYTHON", "1")
    python = [check_linearizable(h, o) for h, o in cases]
    assert {r.verdict for r in compiled} == {"valid", "invalid"}

    def strip(stats: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in stats.items() if k != "seconds"}

    for a, b in zip(compiled, python, strict=True):
        assert (a.verdict, a.anomalies, a.window) == (b.verdict, b.anomalies, b.window)
        assert strip(dict(a.stats)) == strip(dict(b.stats))


def _wide(ops: int) -> list[LinOp]:
    """One long acquire open while ``ops`` others complete: wider than the core's bitset."""
    out = [LinOp(0, 0, 4 * ops + 10, "owner", None, ((), None), True, 0, 1, 0, 1)]
    for i in range(ops):
        out.append(LinOp(1, 4 * i + 2, 4 * i + 3, "owner", None, ((), None), True, i, i, 0, 1))
    return out


def test_a_history_wider_than_the_core_falls_back_to_python() -> None:
    model = MutexModel(CheckOptions())
    ops = _wide(100)
    encoded = native.encode(ops, model, None)
    assert encoded is not None
    status, *_ = native.run(encoded, (0, 0, 0), None, 4096, None, False, True)
    assert status == native.STATUS_UNSUPPORTED
    assert search(ops, model.step, None, None, native=encoded) == search(
        ops, model.step, None, None
    )


def test_values_the_core_cannot_compare_stay_in_python() -> None:
    options = CheckOptions(model="register")
    model = make_model("register", options)
    nan = float("nan")
    ops = [LinOp(0, 0, 1, "write", nan, nan, True, 0, 0, 0, 1)]
    assert native.encode(ops, model, None) is None

    class Custom(MutexModel):
        def step(self, state: Hashable, op: LinOp) -> Hashable:
            return super().step(state, op)

    assert native.encode(_wide(1), Custom(options), None) is None


def test_the_core_checks_the_budget_and_passes_its_error_on() -> None:
    history = register_history(seed=3, ops=4000, processes=5, info_rate=0.3)
    options = CheckOptions(model="cas-register")
    model = make_model("cas-register", options)
    ops = max(ops_by_key(history, model).values(), key=len)
    encoded = native.encode(ops, model, model.interchangeable)
    budget = Budget.start(0.0, 1024)
    with pytest.raises(BudgetExceeded):
        search(ops, model.step, model.initial(), budget, native=encoded, dominance=False)
