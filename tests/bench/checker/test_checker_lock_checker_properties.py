"""The fencing and resource-overlap sweeps agree with pairwise definitions on random histories."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.checker.fencing import grant_order_anomalies
from bench.checker.mutual_exclusion import overlapping_sections
from bench.checker.resource import accesses, sections
from lockbench.history import Op, pair_calls

EXAMPLES = 5000 if os.environ.get("LOCKBENCH_LONG") else 500
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True)


@st.composite
def grant_histories(draw: Any) -> list[Op]:
    """Acquires by up to 4 processes on 2 locks, interleaved at random, with random tokens."""
    ops: list[Op] = []
    pending: dict[int, str] = {}
    for _ in range(draw(st.integers(1, 16))):
        process = draw(st.integers(0, 3))
        if process in pending:
            key = pending.pop(process)
            outcome = draw(st.sampled_from(["ok", "ok", "fail", "info"]))
            token = draw(st.integers(1, 6)) if outcome == "ok" else None
            ops.append(Op(len(ops), len(ops), process, outcome, "acquire", key, token))
        else:
            key = draw(st.sampled_from(["A", "B"]))
            pending[process] = key
            ops.append(Op(len(ops), len(ops), process, "invoke", "acquire", key, None))
    return ops


def pairwise_fencing_kinds(ops: list[Op]) -> set[str]:
    grants = [
        c
        for c in pair_calls(ops)
        if c.outcome == "ok" and isinstance(c.completion.value, int)  # type: ignore[union-attr]
    ]
    kinds = set()
    for a in grants:
        for b in grants:
            if a is b or a.invoke.key != b.invoke.key:
                continue
            ta, tb = a.completion.value, b.completion.value  # type: ignore[union-attr]
            if ta == tb:
                kinds.add("duplicate-token")
            elif a.completion.index < b.invoke.index and tb < ta:  # type: ignore[union-attr]
                kinds.add("token-order")
    return kinds


@SETTINGS
@given(grant_histories())
def test_token_checks_agree_with_the_pairwise_definition(ops: list[Op]) -> None:
    found, _ = grant_order_anomalies(pair_calls(ops))
    assert {a.kind for a in found} == pairwise_fencing_kinds(ops)


@st.composite
def resource_histories(draw: Any) -> list[Op]:
    """Critical sections of up to 3 processes on one key at random resource times."""
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 5))):
        process = draw(st.integers(0, 2))
        start = draw(st.integers(0, 50))
        length = draw(st.integers(0, 20))
        for f, t in (("res-enter", start), ("res-exit", start + length)):
            ops.append(Op(len(ops), len(ops), process, "invoke", f, "L", {"token": 1}))
            value = {"accepted": True, "resource_time": t}
            ops.append(Op(len(ops), len(ops), process, "ok", f, "L", value))
    return ops


@SETTINGS
@given(resource_histories())
def test_overlap_sweep_finds_an_overlap_exactly_when_some_pair_overlaps(ops: list[Op]) -> None:
    found = sections(accesses(pair_calls(ops)))
    pairwise = any(
        a.process != b.process and a.start < b.end and b.start < a.end
        for i, a in enumerate(found)
        for b in found[i + 1 :]
    )
    assert bool(overlapping_sections(found)) == pairwise
