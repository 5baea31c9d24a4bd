"""The search engine agrees with a brute-force oracle on thousands of small random histories.

Histories are random interleavings of invocations and completions (ok/fail/info, unfinished ops,
retired processes), so most are not linearizable and both answers are exercised. Set
LOCKBENCH_LONG=1 for ten times more examples.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.checker.budget import Budget
from bench.checker.linearizable import check_linearizable, ops_by_key, smallest_window
from bench.checker.models import Model, make_model
from bench.checker.operations import LinOp
from bench.checker.wgl import search
from lockbench.history import Op
from lockbench.options import CheckOptions
from tests.bench.checker.checker_brute_force import brute_force_linearizable

# Property tests over many generated histories: seconds each, so the process lane runs them.
pytestmark = pytest.mark.slow

EXAMPLES = 10000 if os.environ.get("LOCKBENCH_LONG") else 700
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _lock_op(draw: Any, outcome: str) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(["acquire", "acquire", "release", "owner"]))
    if f == "owner":  # sessions are "s<process>"; s9 belongs to no process of the history
        holders = draw(st.sampled_from([[], ["s0"], ["s1"], ["s2"], ["s9"], ["s0", "s1"]]))
        return f, None, {"holders": holders, "token": draw(st.sampled_from([None, 1, 2, 3]))}
    token = draw(st.integers(1, 4)) if f == "acquire" else None
    return f, None, token


def _register_op(draw: Any, outcome: str, cas: bool) -> tuple[str, Any, Any]:
    fs = ["read", "write", "cas"] if cas else ["read", "write"]
    f = draw(st.sampled_from(fs))
    if f == "read":
        return f, None, draw(st.sampled_from([None, 0, 1, 2]))
    if f == "write":
        v = draw(st.integers(0, 2))
        return f, v, v
    pair = [draw(st.sampled_from([None, 0, 1, 2])), draw(st.integers(0, 2))]
    return f, pair, pair


@st.composite
def histories(
    draw: Any, kind: str, keys: int = 1, max_calls: int = 6, info_heavy: bool = False
) -> list[Op]:
    """A random well-formed history of up to ``max_calls`` calls by up to 3 live processes."""
    calls = draw(st.integers(1, max_calls))
    live = list(range(draw(st.integers(1, 3))))
    next_process = len(live)
    pending: dict[int, tuple[str, Any, Any, str]] = {}
    ops: list[Op] = []
    started = 0
    while started < calls or pending:
        choices = [p for p in live if p in pending or started < calls]
        if not choices or (draw(st.integers(0, 9)) == 0 and started >= calls):
            break  # leave the rest unfinished
        p = draw(st.sampled_from(choices))
        key = f"k{draw(st.integers(0, keys - 1))}" if p not in pending else pending[p][3]
        if p not in pending:
            outcomes = ["ok", "info", "info"] if info_heavy else ["ok", "ok", "ok", "fail", "info"]
            outcome = draw(st.sampled_from(outcomes))
            if kind == "lock":
                f, arg, result = _lock_op(draw, outcome)
            else:
                f, arg, result = _register_op(draw, outcome, cas=kind != "register")
            pending[p] = (f, result, outcome, key)
            ops.append(Op(len(ops), len(ops), p, "invoke", f, key, arg))
            started += 1
            continue
        f, result, outcome, key = pending.pop(p)
        value = result if outcome == "ok" else None
        session = f"s{p}" if f == "acquire" and outcome == "ok" else None
        ops.append(Op(len(ops), len(ops), p, outcome, f, key, value, session=session))
        if outcome == "info":
            live.remove(p)
            live.append(next_process)
            next_process += 1
    return ops


def _agree(history: list[Op], options: CheckOptions) -> None:
    model = make_model(options.model or "", options)
    for ops in ops_by_key(history, model).values():
        expected = brute_force_linearizable(ops, model.step, model.initial())
        got = search(ops, model.step, model.initial(), None).linearizable
        assert got == expected, (history, ops)
        plain = search(ops, model.step, model.initial(), None, dominance=False).linearizable
        assert plain == expected, (history, ops)
        for dominance in (True, False):
            reduced = search(
                ops,
                model.step,
                model.initial(),
                None,
                dominance=dominance,
                interchangeable=model.interchangeable,
            )
            assert reduced.linearizable == expected, (history, ops, dominance)
        if not expected:
            _window_is_a_proof(ops, model)
        # The relaxed search (info ops may repeat) may only refute what really is refuted.
        for twins in (None, model.interchangeable):
            relaxed = search(
                ops, model.step, model.initial(), None, reuse_optional=True, interchangeable=twins
            )
            assert relaxed.linearizable or not expected, (history, ops)
    whole = check_linearizable(history, options)
    every_key = all(
        brute_force_linearizable(ops, model.step, model.initial())
        for ops in ops_by_key(history, model).values()
    )
    assert whole.verdict == ("valid" if every_key else "invalid")


def _window_is_a_proof(ops: list[LinOp], model: Model) -> None:
    """The counterexample window is non-linearizable from every state it could start in."""
    outcome = search(ops, model.step, model.initial(), None)
    assert outcome.stuck is not None
    stuck = ops[outcome.stuck]
    budget = Budget.start(60, 1024)
    window = smallest_window(ops, stuck, model, budget)
    assert window is not None, ops
    assert stuck in window.ops
    for state in window.states:
        assert not brute_force_linearizable(window.ops, model.step, state), (ops, window, state)
    if window.states != (model.initial(),):
        # Every state the key could reach before the window ends, not just those it names.
        before_end = [op for op in ops if stuck.ret is not None and op.call < stuck.ret]
        for state in model.candidate_states(before_end, before_end):
            assert not brute_force_linearizable(window.ops, model.step, state), (ops, state)


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
@pytest.mark.parametrize("crashed_holders", ["release", "hold"])
def test_lock_models_agree_with_brute_force(model: str, crashed_holders: str) -> None:
    options = CheckOptions(model=model, crashed_holders=crashed_holders)  # type: ignore[arg-type]

    @PROPERTY_SETTINGS
    @given(histories("lock", keys=2, max_calls=7))
    def run(history: list[Op]) -> None:
        _agree(history, options)

    run()


@pytest.mark.parametrize(
    ("model", "kind", "switches"),
    [
        ("register", "register", {}),
        ("register", "register", {"knossos_nil_reads": True}),
        ("cas-register", "cas", {}),
        ("cas-register", "cas", {"failed_cas_observed": True}),
        ("kv", "cas", {"knossos_nil_reads": True}),
    ],
)
def test_register_models_agree_with_brute_force(
    model: str, kind: str, switches: dict[str, bool]
) -> None:
    options = CheckOptions(model=model, **switches)  # type: ignore[arg-type]

    @PROPERTY_SETTINGS
    @given(histories(kind, keys=2 if model == "kv" else 1, max_calls=7))
    def run(history: list[Op]) -> None:
        _agree(history, options)

    run()


@pytest.mark.parametrize("model", ["cas-register", "owned-mutex"])
def test_engine_agrees_on_histories_full_of_info_ops(model: str) -> None:
    """Many pending info ops, often with equal effects: the symmetry reduction's territory."""
    options = CheckOptions(model=model, failed_cas_observed=model == "cas-register")

    @PROPERTY_SETTINGS
    @given(histories("lock" if model == "owned-mutex" else "cas", max_calls=7, info_heavy=True))
    def run(history: list[Op]) -> None:
        _agree(history, options)

    run()
