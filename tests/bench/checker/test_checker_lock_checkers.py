"""The lock checkers on histories that contain each anomaly, and on ones that do not."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.checker.liveness import Hold, HolderLoss, KeyHolds, deadline_outside, quorum_outages
from bench.checking import available_checkers, run_checkers
from lockbench.errors import ConfigError
from lockbench.history import Op
from lockbench.protocols import combine_verdicts
from tests.bench.checker.checker_histories import MS, history

S = 1_000_000_000


def check(name: str, ops: list[Op], **options: Any) -> Any:
    verdict, results = run_checkers(ops, [name], options)
    assert verdict == combine_verdicts([results[name].verdict, results["stats"].verdict])
    return results[name]


def access(process: int, f: str, token: int, rtime: int, *, accepted: bool = True) -> list[Any]:
    arg: dict[str, Any] = {"token": token}
    result: dict[str, Any] = {"accepted": accepted, "resource_time": rtime}
    if f == "res-write":
        arg["value"] = result["value"] = 1
    completion: tuple[Any, ...] = (process, "ok" if accepted else "fail", f, "L", result)
    if not accepted:
        result["highest"] = token + 1
        completion = (process, "fail", f, "L", result, {"error": "stale-token"})
    return [(process, "invoke", f, "L", arg), completion]


def section(process: int, token: int, start: int, end: int) -> list[Any]:
    return [*access(process, "res-enter", token, start), *access(process, "res-exit", token, end)]


# --- mutual exclusion ---------------------------------------------------------------------


def test_mutual_exclusion_finds_critical_sections_overlapping_on_the_resource_clock() -> None:
    ops = history(*section(0, 1, 100, 300), *section(1, 2, 200, 400))
    result = check("mutual-exclusion", ops)
    assert result.verdict == "invalid"
    (anomaly,) = result.anomalies
    assert anomaly.kind == "overlapping-critical-sections"
    assert set(anomaly.processes) == {0, 1}


def test_mutual_exclusion_accepts_sections_one_after_another() -> None:
    ops = history(*section(0, 1, 100, 200), *section(1, 2, 300, 400), *section(0, 3, 500, 600))
    assert check("mutual-exclusion", ops).verdict == "valid"


def test_mutual_exclusion_ignores_refused_accesses_of_a_stale_holder() -> None:
    ops = history(
        *access(0, "res-enter", 1, 100),
        *section(1, 2, 200, 400),
        *access(0, "res-exit", 1, 300, accepted=False),
    )
    assert check("mutual-exclusion", ops).verdict == "valid"


def test_mutual_exclusion_runs_the_owned_mutex_model_on_the_lock_ops() -> None:
    ops = history(
        (0, "invoke", "acquire", "L", None),
        (0, "ok", "acquire", "L", None),
        (1, "invoke", "acquire", "L", None),
        (1, "ok", "acquire", "L", None),
    )
    result = check("mutual-exclusion", ops)
    assert result.verdict == "invalid"
    assert result.anomalies[0].kind == "nonlinearizable"


# --- fencing ------------------------------------------------------------------------------


def grant(process: int, token: int) -> list[Any]:
    return [
        (process, "invoke", "acquire", "L", {"timeout": 1, "shared": False}),
        (process, "ok", "acquire", "L", token, {"session": f"s{process}"}),
    ]


def release(process: int) -> list[Any]:
    return [(process, "invoke", "release", "L", None), (process, "ok", "release", "L", None)]


def test_fencing_accepts_increasing_tokens() -> None:
    ops = history(*grant(0, 3), *release(0), *grant(1, 7), *release(1))
    assert check("fencing", ops).verdict == "valid"


def test_fencing_finds_a_token_lower_than_an_earlier_grant() -> None:
    ops = history(*grant(0, 7), *release(0), *grant(1, 3))
    result = check("fencing", ops)
    assert result.verdict == "invalid"
    assert [a.kind for a in result.anomalies] == ["token-order"]
    assert result.anomalies[0].processes == (0, 1)


def test_fencing_finds_a_token_granted_twice() -> None:
    ops = history(
        (0, "invoke", "acquire", "L", None),
        (1, "invoke", "acquire", "L", None),
        (0, "ok", "acquire", "L", 4),
        (1, "ok", "acquire", "L", 4),
    )
    result = check("fencing", ops)
    assert [a.kind for a in result.anomalies] == ["duplicate-token"]


def test_a_token_granted_twice_to_one_process_names_it_once() -> None:
    # once read "processes 2 and 2 were both granted" (a restarted leader reusing tokens)
    ops = history(
        (2, "invoke", "acquire", "L", None),
        (2, "ok", "acquire", "L", 4),
        (2, "invoke", "release", "L", None),
        (2, "ok", "release", "L", None),
        (2, "invoke", "acquire", "L", None),
        (2, "ok", "acquire", "L", 4),
    )
    (anomaly,) = check("fencing", ops).anomalies
    assert anomaly.kind == "duplicate-token"
    assert anomaly.explanation.startswith("process 2 was granted 'L' with token 4 twice (ops 0 and")
    assert "processes 2 and 2" not in anomaly.explanation
    assert anomaly.processes == (2,)


def test_fencing_finds_the_resource_accepting_a_lower_token() -> None:
    ops = history(*access(0, "res-write", 5, 100), *access(1, "res-write", 4, 200))
    result = check("fencing", ops)
    assert [a.kind for a in result.anomalies] == ["stale-token-accepted"]


def test_fencing_counts_refusals_without_flagging_them() -> None:
    ops = history(*access(0, "res-write", 5, 100), *access(1, "res-write", 4, 200, accepted=False))
    result = check("fencing", ops)
    assert result.verdict == "valid"
    assert result.stats["refused_stale_accesses"] == 1


# --- lost updates -------------------------------------------------------------------------


def counter_history(writes: int, final: int | None, info_writes: int = 0) -> list[Op]:
    records: list[Any] = []
    for i in range(writes):
        records += access(i % 3, "res-write", i + 1, 100 * (i + 1))
    for i in range(info_writes):
        records += [(10 + i, "invoke", "res-write", "L", {"token": 99, "value": 1})]
        records += [(10 + i, "info", "res-write", "L", None)]
    if final is not None:
        records += [(0, "invoke", "final-read", "L", None)]
        records += [(0, "ok", "final-read", "L", {"value": final, "resource_time": 10**6})]
    return history(*records)


@pytest.mark.parametrize(
    ("writes", "final", "info", "expected"),
    [
        (3, 3, 0, "valid"),
        (3, 2, 0, "invalid"),
        (3, 4, 1, "valid"),
        (3, 5, 1, "invalid"),
        (3, None, 0, "unknown"),
    ],
)
def test_lost_updates_compares_the_final_value_with_acknowledged_increments(
    writes: int, final: int | None, info: int, expected: str
) -> None:
    result = check("lost-updates", counter_history(writes, final, info))
    assert result.verdict == expected
    if expected == "invalid":
        assert result.anomalies[0].kind in ("lost-update", "phantom-update")


# --- liveness -----------------------------------------------------------------------------


def crashed_holder_history(waiter_done_s: float, granted: bool) -> list[Op]:
    return history(
        (0, "invoke", "acquire", "L", None, {"time": 0}),
        (0, "ok", "acquire", "L", 1, {"time": 1 * MS}),
        (0, "invoke", "owner", "L", None, {"time": 2 * MS}),
        (0, "info", "owner", "L", None, {"time": 1 * S}),
        (1, "invoke", "acquire", "L", None, {"time": int(1.5 * S)}),
        (
            1,
            "ok" if granted else "fail",
            "acquire",
            "L",
            2 if granted else None,
            {"time": int(waiter_done_s * S)},
        ),
        (2, "invoke", "read", "x", None, {"time": 30 * S}),
        (2, "ok", "read", "x", None, {"time": 30 * S + 1}),
    )


def test_liveness_accepts_a_grant_within_ttl_failover_and_margin() -> None:
    result = check("liveness", crashed_holder_history(5.0, True), ttl=3, failover=1, margin=1)
    assert result.verdict == "valid"
    assert result.stats["recovered"] == 1
    assert result.stats["recovery_max_s"] == pytest.approx(4.0)


def test_liveness_flags_a_waiter_still_waiting_after_the_allowance() -> None:
    result = check("liveness", crashed_holder_history(9.0, True), ttl=3, failover=1, margin=1)
    assert result.verdict == "invalid"
    (anomaly,) = result.anomalies
    assert anomaly.kind == "lock-not-granted"
    assert anomaly.processes == (0, 1)


def test_liveness_is_unknown_without_a_ttl() -> None:
    result = check("liveness", crashed_holder_history(5.0, True))
    assert result.verdict == "unknown"
    assert "ttl" in (result.reason or "")


def test_liveness_watches_stalled_holders_too() -> None:
    ops = history(
        (0, "invoke", "acquire", "L", None, {"time": 0}),
        (0, "ok", "acquire", "L", 1, {"time": 1}),
        (0, "invoke", "stall", None, {"seconds": 20}, {"time": 2}),
        (1, "invoke", "acquire", "L", None, {"time": 3}),
        (1, "ok", "acquire", "L", 2, {"time": 12 * S}),
        (0, "ok", "stall", None, {"seconds": 20}, {"time": 20 * S}),
    )
    result = check("liveness", ops, ttl=5, failover=1, margin=1)
    assert result.verdict == "invalid"
    assert "stalled" in result.anomalies[0].explanation


def queued_crash_behind_a_long_holder(waiter_granted_s: float) -> list[Op]:
    """Process 0 holds L for 20 s; process 1, queued behind it, dies (info) at 2 s; process 2
    waits from 1.5 s and is granted at ``waiter_granted_s``."""
    return history(
        (0, "invoke", "acquire", "L", None, {"time": 0}),
        (0, "ok", "acquire", "L", 1, {"time": 1 * MS}),
        (1, "invoke", "acquire", "L", None, {"time": 1 * S}),
        (2, "invoke", "acquire", "L", None, {"time": int(1.5 * S)}),
        (1, "info", "acquire", "L", None, {"time": 2 * S}),
        (0, "invoke", "release", "L", None, {"time": 20 * S}),
        (0, "ok", "release", "L", None, {"time": 20 * S + MS}),
        (2, "ok", "acquire", "L", 3, {"time": int(waiter_granted_s * S)}),
        (3, "invoke", "read", "x", None, {"time": 40 * S}),
        (3, "ok", "read", "x", None, {"time": 40 * S + 1}),
    )


def test_liveness_owes_a_waiter_nothing_while_a_live_holder_keeps_the_lock() -> None:
    result = check("liveness", queued_crash_behind_a_long_holder(20.1), ttl=3, failover=1, margin=1)
    assert result.verdict == "valid", result.anomalies
    assert result.stats["recovered"] == 1
    assert result.stats["recovery_max_s"] == pytest.approx(0.1, abs=0.01)


def test_liveness_runs_the_allowance_from_the_live_holder_s_release() -> None:
    result = check("liveness", queued_crash_behind_a_long_holder(27.0), ttl=3, failover=1, margin=1)
    assert result.verdict == "invalid"
    (anomaly,) = result.anomalies
    assert anomaly.processes == (1, 2)


def fault(
    start_s: float,
    stop_s: float,
    nodes: list[str],
    index: int = 0,
    kind: str = "power-loss",
    **extra: Any,
) -> list[tuple[Any, ...]]:
    """A nemesis fault on ``nodes`` from its start invoke to its stop info."""
    start = {"nemesis": index, "nodes": nodes, **extra}
    return [
        ("nemesis", "invoke", f"start-{kind}", None, start, {"time": int(start_s * S)}),
        (
            "nemesis",
            "info",
            f"start-{kind}",
            None,
            {"nemesis": index},
            {"time": int(start_s * S) + MS},
        ),
        (
            "nemesis",
            "invoke",
            f"stop-{kind}",
            None,
            {"nemesis": index},
            {"time": int(stop_s * S) - MS},
        ),
        ("nemesis", "info", f"stop-{kind}", None, {"nemesis": index}, {"time": int(stop_s * S)}),
    ]


def crashed_holder_with_faults(granted_s: float, *faults: list[tuple[Any, ...]]) -> list[Op]:
    """Process 0 holds L and dies at 1 s; process 1 waits from 1.5 s and is granted at
    ``granted_s``; the faults' records are placed by their times."""
    records = [
        (0, "invoke", "acquire", "L", None, {"time": 0}),
        (0, "ok", "acquire", "L", 1, {"time": 1 * MS}),
        (0, "invoke", "owner", "L", None, {"time": 2 * MS}),
        (0, "info", "owner", "L", None, {"time": 1 * S}),
        (1, "invoke", "acquire", "L", None, {"time": int(1.5 * S)}),
        (1, "ok", "acquire", "L", 2, {"time": int(granted_s * S)}),
        (2, "invoke", "read", "x", None, {"time": 40 * S}),
        (2, "ok", "read", "x", None, {"time": 40 * S + 1}),
    ]
    for records_of_fault in faults:
        records += records_of_fault
    records.sort(key=lambda r: r[-1]["time"])
    return history(*records)


def test_liveness_does_not_count_time_with_a_majority_of_nodes_down() -> None:
    """A majority power loss 1.2-6 s: 4.8 s of outage added to the 5 s allowance (ttl 3 +
    failover 1 + margin 1), so a grant at 9 s is in time; the same without cluster_size in the
    record (an older history) is judged as before."""
    majority = fault(1.2, 6.0, ["n1", "n2", "n3"], cluster_size=5)
    result = check(
        "liveness", crashed_holder_with_faults(9.0, majority), ttl=3, failover=1, margin=1
    )
    assert result.verdict == "valid", result.anomalies
    assert result.stats["quorum_outages_s"] == pytest.approx(4.8)
    unsized = fault(1.2, 6.0, ["n1", "n2", "n3"])
    result = check(
        "liveness", crashed_holder_with_faults(9.0, unsized), ttl=3, failover=1, margin=1
    )
    assert result.verdict == "invalid"
    assert "not counting" not in result.anomalies[0].explanation


def test_liveness_still_counts_a_minority_outage() -> None:
    minority = fault(1.2, 6.0, ["n1", "n2"], kind="kill", cluster_size=5)
    result = check(
        "liveness", crashed_holder_with_faults(9.0, minority), ttl=3, failover=1, margin=1
    )
    assert result.verdict == "invalid"
    assert result.stats["quorum_outages_s"] == 0


def test_liveness_counts_overlapping_faults_nodes_together() -> None:
    """A kill of n1 and n2 (2-8 s) and a pause of n3 (4-6 s): a majority is down 4-6 s only; a
    grant at 9 s needs the 2 s (deadline 1 + 5 + 2 = 8 s is too early), so it is late, and
    at 7.5 s it is in time. The explanation says what was not counted."""
    kill = fault(2.0, 8.0, ["n1", "n2"], index=0, kind="kill", cluster_size=5)
    pause = fault(4.0, 6.0, ["n3"], index=1, kind="pause", cluster_size=5)
    late = check(
        "liveness", crashed_holder_with_faults(9.0, kill, pause), ttl=3, failover=1, margin=1
    )
    assert late.verdict == "invalid"
    assert "not counting 2.000 s with a majority of the nodes down" in late.anomalies[0].explanation
    in_time = check(
        "liveness", crashed_holder_with_faults(7.5, kill, pause), ttl=3, failover=1, margin=1
    )
    assert in_time.verdict == "valid"
    assert in_time.stats["quorum_outages_s"] == pytest.approx(2.0)


def test_a_skipped_fault_is_no_outage() -> None:
    skipped = [
        (
            "nemesis",
            "invoke",
            "start-kill",
            None,
            {"nemesis": 0, "nodes": ["n1", "n2", "n3"], "cluster_size": 5},
            {"time": int(1.2 * S)},
        ),
        (
            "nemesis",
            "info",
            "start-kill",
            None,
            {"nemesis": 0, "skipped": "no leader known"},
            {"time": int(1.3 * S)},
        ),
    ]
    assert quorum_outages(crashed_holder_with_faults(9.0, skipped)) == []


@given(
    st.integers(0, 100),
    st.integers(0, 50),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=6),
)
def test_the_deadline_skips_exactly_the_outage_time(
    start: int, allowance: int, raw: list[tuple[int, int]]
) -> None:
    """Against a walk over unit steps: the deadline is the first moment by which ``allowance``
    units outside the outages have passed."""
    covered: set[int] = set()
    for begin, length in raw:
        covered.update(range(begin, begin + length))
    outages: list[tuple[int, int]] = []
    for unit in sorted(covered):  # disjoint, sorted intervals of the union
        if outages and outages[-1][1] == unit:
            outages[-1] = (outages[-1][0], unit + 1)
        else:
            outages.append((unit, unit + 1))
    at, left = start, allowance
    while left:
        if at not in covered:
            left -= 1
        at += 1
    assert deadline_outside(start, allowance, outages) == at


def test_liveness_finds_the_other_holders_by_bisection_as_a_scan_would() -> None:
    """KeyHolds' prefix maxima answer what a scan over every hold answers (seeded cases)."""
    rng = random.Random(16)
    for _ in range(300):
        key_holds = []
        for _ in range(rng.randint(0, 8)):
            start = rng.randint(0, 50)
            end = None if rng.random() < 0.15 else start + rng.randint(0, 30)
            key_holds.append(Hold(rng.randint(0, 3), start, end))
        index = KeyHolds(key_holds)
        for time in range(0, 90, 3):
            for process in range(4):
                loss = HolderLoss("L", process, "crashed", time, cast(Any, None))
                others = [h for h in key_holds if h.process != process and h.start <= time]
                if any(h.end is None for h in others):
                    expected: int | None = None
                else:
                    ends = [h.end for h in others if h.end is not None and h.end > time]
                    expected = max(ends, default=-1)
                assert index.held_by_others_until(loss) == expected, (key_holds, time, process)


# --- availability -------------------------------------------------------------------------


def test_availability_measures_each_fault_window_and_the_longest_gap() -> None:
    records: list[Any] = []
    t = 0
    for i in range(10):  # one ok op every 100 ms for a second
        records += [
            (0, "invoke", "read", "x", None, {"time": t}),
            (0, "ok", "read", "x", i, {"time": t + 1}),
        ]
        t += 100 * MS
    records += [("nemesis", "invoke", "start-kill", None, {"node": "n1"}, {"time": t})]
    records += [("nemesis", "info", "start-kill", None, {"node": "n1"}, {"time": t + 1})]
    records += [
        (1, "invoke", "read", "x", None, {"time": t + 2}),
        (1, "info", "read", "x", None, {"time": t + 2 * S}),
    ]
    records += [
        (2, "invoke", "read", "x", None, {"time": t + 2 * S + 1}),
        (2, "ok", "read", "x", 1, {"time": t + 3 * S}),
    ]
    records += [("nemesis", "invoke", "stop-kill", None, {"node": "n1"}, {"time": t + 4 * S})]
    records += [("nemesis", "info", "stop-kill", None, {"node": "n1"}, {"time": t + 4 * S + 1})]
    ops = history(*records)
    result = check("availability", ops)
    assert result.verdict == "valid"
    (window,) = result.stats["windows"]
    assert window["fault"] == "kill"
    assert window["ops"] == 2
    assert window["ok"] == 1
    assert window["success_fraction"] == 0.5
    assert window["longest_gap_s"] == pytest.approx(3.0, abs=0.01)
    assert window["first_success_after_s"] == pytest.approx(3.0, abs=0.01)
    strict = check("availability", ops, max_gap=2)
    assert strict.verdict == "invalid"
    assert strict.anomalies[0].kind == "unavailable"


# --- watches ------------------------------------------------------------------------------


def event(revision: int, kind: str, session: str, token: int) -> dict[str, Any]:
    return {"revision": revision, "kind": kind, "lock": "L", "session": session, "token": token}


def watched(events: list[dict[str, Any]]) -> list[Op]:
    return history(
        (9, "invoke", "watch", None, {"prefix": "L", "from_revision": 0}),
        *grant(0, 1),
        *release(0),
        *grant(1, 2),
        (9, "ok", "watch", None, events),
    )


GOOD_STREAM = [
    event(1, "acquired", "s0", 1),
    event(2, "released", "s0", 1),
    event(3, "acquired", "s1", 2),
]


def test_watches_accept_a_complete_ordered_stream() -> None:
    assert check("watches", watched(GOOD_STREAM)).verdict == "valid"


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        (GOOD_STREAM[:2], "watch-missed-event"),
        ([*GOOD_STREAM, GOOD_STREAM[0]], "watch-duplicate"),
        ([GOOD_STREAM[1], GOOD_STREAM[0], GOOD_STREAM[2]], "watch-out-of-order"),
    ],
)
def test_watches_find_missing_duplicate_and_misordered_events(
    stream: list[dict[str, Any]], kind: str
) -> None:
    result = check("watches", watched(stream))
    assert result.verdict == "invalid"
    assert kind in {a.kind for a in result.anomalies}


# --- composition --------------------------------------------------------------------------


def test_run_checkers_composes_invalid_over_unknown_over_valid() -> None:
    ops = crashed_holder_history(9.0, True)
    verdict, results = run_checkers(ops, ["fencing", "liveness"], {})
    assert results["fencing"].verdict == "valid"
    assert results["liveness"].verdict == "unknown"
    assert verdict == "unknown"
    verdict, _ = run_checkers(ops, ["fencing", "liveness"], {"ttl": 3, "failover": 1, "margin": 1})
    assert verdict == "invalid"


def test_unknown_checker_and_unknown_option_are_config_errors() -> None:
    assert "linearizable" in available_checkers()
    assert len(available_checkers()) == 9
    with pytest.raises(ConfigError, match="unknown checker"):
        run_checkers([], ["linearisable"], {})
    with pytest.raises(ConfigError, match="unknown checker option"):
        run_checkers([], ["fencing"], {"tll": 3})


def test_watches_find_two_watchers_disagreeing_about_a_revision() -> None:
    other = {**GOOD_STREAM[0], "session": "s1"}
    ops = history(
        (8, "invoke", "watch", None, {"prefix": "L", "from_revision": 0}),
        (9, "invoke", "watch", None, {"prefix": "M", "from_revision": 0}),
        (8, "ok", "watch", None, [GOOD_STREAM[0]]),
        (9, "ok", "watch", None, [other]),
    )
    result = check("watches", ops)
    assert [a.kind for a in result.anomalies] == ["watch-disagreement"]
