"""The compare page's figures, computed from small histories whose answers are known by hand."""

from __future__ import annotations

from typing import Any

import pytest

from lockbench.history import Op
from reports.performance import percentile, run_performance

S = 1_000_000_000  # ns per second


class History:
    """Builds a history op by op, with times in seconds."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(
        self, t: float, process: Any, type_: str, f: str, key: str | None = None, value: Any = None
    ) -> None:
        self.ops.append(Op(len(self.ops), int(t * S), process, type_, f, key, value))  # type: ignore[arg-type]

    def call(
        self,
        t0: float,
        t1: float,
        process: int,
        f: str,
        key: str,
        outcome: str = "ok",
        value: Any = None,
    ) -> None:
        self.add(t0, process, "invoke", f, key)
        self.add(t1, process, outcome, f, key, value)


@pytest.mark.parametrize(
    ("since_s", "unaware_s"),
    [
        (2.0, 0.0),  # its lease lapsed before the other's grant: it knew first
        (3.6, 0.6),  # it knew 0.6 s after the grant, though recorded only at 4.0 s
        (None, 1.0),  # a record without since counts from its own time
    ],
)
def test_a_holder_taken_over_is_unaware_until_its_lease_lost_since(
    since_s: float | None, unaware_s: float
) -> None:
    h = History()
    h.call(0.0, 1.0, 1, "acquire", "L", value=1)
    h.call(1.5, 3.0, 2, "acquire", "L", value=2)  # granted while 1 has not released: a takeover
    value = None if since_s is None else {"since": int(since_s * S)}
    h.call(4.0, 4.0, 1, "lease-lost", "L", value=value)
    h.call(4.1, 5.0, 1, "release", "L", outcome="info")
    h.call(5.0, 5.2, 2, "release", "L")
    perf = run_performance(h.ops)
    assert len(perf.takeovers) == 1
    takeover = perf.takeovers[0]
    assert (takeover.holder, takeover.taker, takeover.how) == (1, 2, "lease-lost")
    assert takeover.unaware_s == pytest.approx(unaware_s)
    assert perf.never_aware == 0
    assert perf.handoffs == 1


def test_a_holder_that_releases_without_noticing_counts_as_never_aware() -> None:
    h = History()
    h.call(0.0, 1.0, 1, "acquire", "L", value=1)
    h.call(1.0, 2.0, 2, "acquire", "L", value=2)
    h.call(2.0, 2.1, 1, "res-write", "L", value={"accepted": True})
    h.call(6.0, 6.1, 1, "release", "L")  # ok: the old holder never learned
    perf = run_performance(h.ops)
    (takeover,) = perf.takeovers
    assert takeover.aware_at is None
    assert takeover.how == "released unaware"
    assert takeover.unaware_s == pytest.approx(4.0)
    assert perf.never_aware == 1


def test_a_refused_write_is_how_a_fenced_holder_learns() -> None:
    h = History()
    h.call(0.0, 1.0, 1, "acquire", "L", value=1)
    h.call(1.0, 2.0, 2, "acquire", "L", value=2)
    h.call(2.5, 2.75, 1, "res-write", "L", outcome="fail", value={"accepted": False})
    perf = run_performance(h.ops)
    (takeover,) = perf.takeovers
    assert takeover.how == "fail res-write"
    assert takeover.unaware_s == pytest.approx(0.75)


def test_orderly_hand_offs_are_not_takeovers_and_rates_use_the_client_span() -> None:
    h = History()
    for i in range(10):  # two processes take turns: acquire, release, 0.1 s + 0.1 s each
        t = i * 0.2
        h.call(t, t + 0.1, i % 2, "acquire", "L", value=i)
        h.call(t + 0.1, t + 0.2, i % 2, "release", "L")
    perf = run_performance(h.ops)
    assert perf.takeovers == ()
    assert perf.handoffs == 9
    assert perf.ok_ops == 20
    assert perf.duration_s == pytest.approx(2.0)
    assert perf.ok_ops_per_s == pytest.approx(10.0)
    assert perf.acquire_p50_ms == pytest.approx(100.0)
    assert perf.longest_gap_in_fault_s is None  # no faults: nothing to measure


def test_the_longest_gap_in_ok_ops_during_a_fault() -> None:
    h = History()
    h.call(0.0, 0.5, 1, "acquire", "L", value=1)
    h.call(0.5, 1.0, 1, "release", "L")
    h.add(1.2, "nemesis", "info", "start-pause", None, {"nodes": ["n1"]})
    h.call(1.0, 4.0, 1, "acquire", "L", value=2)  # the service was unavailable from 1.0 to 4.0
    h.add(5.0, "nemesis", "info", "stop-pause", None, {})
    h.call(4.0, 4.1, 1, "release", "L")
    perf = run_performance(h.ops)
    assert perf.longest_gap_in_fault_s == pytest.approx(2.8)  # from the fault's start (1.2)


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_a_hold_is_taken_over_once_however_many_grants_follow() -> None:
    h = History()
    h.call(0.0, 1.0, 1, "acquire", "L", value=1)
    h.call(1.0, 2.0, 2, "acquire", "L", value=2)
    h.call(2.0, 2.5, 2, "release", "L")
    h.call(2.5, 3.0, 3, "acquire", "L", value=3)  # 1 still believes: not a second takeover of 1
    h.call(4.0, 4.0, 1, "lease-lost", "L", value={"since": 2 * S})
    perf = run_performance(h.ops)
    assert [(t.holder, t.taker) for t in perf.takeovers] == [(1, 2)]
