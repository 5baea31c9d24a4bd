"""A ``lease-lost`` record lets the lock pass on from its ``since`` time, and not before.

The shape is the incident that motivated it (a README run, local runtime, heavy load): on
``lock/2`` process 73 is granted the lock; its keepalives time out, the service expires its
session, and process 55 is granted the lock while 73 never released it. The service was right;
without the client's record of the lapse the checkers could not know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.checker.linearizable import expiries_by_key
from bench.checker.loading import load_history
from bench.checker.operations import LEASE_LOST, LinOp, session_expiries
from bench.checking import run_checkers
from lockbench.history import Call, Op, PairedHistory, Process
from tests.bench.checker.checker_histories import history
from tests.support.histories import lock_history

S = 1_000_000_000
HOLDER, NEXT = 73, 55
LOCK = "lock/2"
LOCK_CHECKERS = ["linearizable", "mutual-exclusion", "fencing"]


def incident(*, since_s: float | None, next_granted_s: float) -> list[Op]:
    """73 holds lock/2 from 46.2 s; 55 waits and is granted at ``next_granted_s``; 73 records
    lease-lost (since ``since_s``, None: no record) at 50.0 s and its release ends unknown."""

    def at(seconds: float, **fields: Any) -> dict[str, Any]:
        return {"time": round(seconds * S), **fields}

    records: list[tuple[Any, ...]] = [
        (HOLDER, "invoke", "acquire", LOCK, {"timeout": 2.0}, at(46.0)),
        (NEXT, "invoke", "acquire", LOCK, {"timeout": 5.0}, at(46.1)),
        (HOLDER, "ok", "acquire", LOCK, 17, at(46.2, session="s73")),
        (HOLDER, "invoke", "res-enter", LOCK, {"token": 17}, at(46.21)),
        (HOLDER, "ok", "res-enter", LOCK, {"accepted": True, "resource_time": 10}, at(46.22)),
        (NEXT, "ok", "acquire", LOCK, 18, at(next_granted_s, session="s55")),
    ]
    if since_s is not None:
        since = {"since": round(since_s * S)}
        records += [
            (HOLDER, "invoke", LEASE_LOST, LOCK, since, at(50.0, session="s73")),
            (HOLDER, "ok", LEASE_LOST, LOCK, since, at(50.0, session="s73")),
        ]
    records += [
        (HOLDER, "invoke", "release", LOCK, None, at(50.01)),
        (HOLDER, "info", "release", LOCK, None, at(50.02, error="SessionExpired: lease lapsed")),
        (NEXT, "invoke", "res-enter", LOCK, {"token": 18}, at(50.1)),
        (NEXT, "ok", "res-enter", LOCK, {"accepted": True, "resource_time": 20}, at(50.11)),
    ]
    ops = history(*records)
    # the records are in time order; ``history`` numbers them in the order given
    assert [op.time for op in ops] == sorted(op.time for op in ops)
    return ops


def verdicts(ops: list[Op]) -> dict[str, str]:
    _, results = run_checkers(ops, LOCK_CHECKERS, {})
    return {name: results[name].verdict for name in LOCK_CHECKERS}


def test_a_grant_after_the_holders_lease_lapsed_is_valid_with_the_record() -> None:
    assert verdicts(incident(since_s=49.0, next_granted_s=49.6)) == dict.fromkeys(
        LOCK_CHECKERS, "valid"
    )


def test_the_same_grant_without_the_record_stays_a_double_grant() -> None:
    result = verdicts(incident(since_s=None, next_granted_s=49.6))
    assert result["linearizable"] == "invalid"
    assert result["mutual-exclusion"] == "invalid"


def test_a_grant_before_the_lease_could_lapse_stays_a_double_grant() -> None:
    result = verdicts(incident(since_s=49.8, next_granted_s=49.6))
    assert result["linearizable"] == "invalid"
    assert result["mutual-exclusion"] == "invalid"


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
def test_every_lock_model_honours_the_record(model: str) -> None:
    _, results = run_checkers(
        incident(since_s=49.0, next_granted_s=49.6), ["linearizable"], {"model": model}
    )
    assert results["linearizable"].verdict == "valid"
    _, results = run_checkers(
        incident(since_s=49.8, next_granted_s=49.6), ["linearizable"], {"model": model}
    )
    assert results["linearizable"].verdict == "invalid"


def test_crashed_holders_hold_ignores_the_record() -> None:
    ops = incident(since_s=49.0, next_granted_s=49.6)
    _, results = run_checkers(ops, ["linearizable"], {"crashed_holders": "hold"})
    assert results["linearizable"].verdict == "invalid"


def test_a_grant_invoked_before_since_may_still_take_effect_after_it() -> None:
    # 55's acquire was invoked at 46.1 s, long before the lapse at 49.5 s; it completed at
    # 49.6 s, so it may have been granted after the service expired 73's session
    assert verdicts(incident(since_s=49.5, next_granted_s=49.6))["linearizable"] == "valid"


def test_the_record_is_a_history_op_the_loader_accepts(tmp_path: Path) -> None:
    ops = incident(since_s=49.0, next_granted_s=49.6)
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(op.to_json()) + "\n" for op in ops), encoding="utf-8")
    loaded = load_history(path)
    lost = [op for op in loaded if op.f == LEASE_LOST]
    assert [(op.type, op.value, op.session) for op in lost] == [
        ("invoke", {"since": 49 * S}, "s73"),
        ("ok", {"since": 49 * S}, "s73"),
    ]


def test_availability_does_not_count_the_record_as_a_served_op() -> None:
    ops = incident(since_s=49.0, next_granted_s=49.6)
    _, results = run_checkers(ops, ["availability"], {})
    served_ok = sum(1 for op in ops if op.type == "ok" and op.f != LEASE_LOST)
    assert results["availability"].stats["overall"]["ok"] == served_ok


def _expiries_straight_from_the_definition(
    calls: list[Call], points: dict[Process, list[LinOp]]
) -> dict[str | None, list[LinOp]]:
    """Per key, per process (in order of its first acquire/release of the key), per expiry:
    kept if the process's last acquire/release of the key at or before the point may hold."""
    out: dict[str | None, list[LinOp]] = {}
    keys = dict.fromkeys(c.invoke.key for c in calls if c.invoke.f in ("acquire", "release"))
    for key in keys:
        mine = [c for c in calls if c.invoke.key == key and c.invoke.f in ("acquire", "release")]
        for process in dict.fromkeys(c.process for c in mine if c.process in points):
            own = [c for c in mine if c.process == process]
            for expiry in points[process]:
                before = [c for c in own if c.invoke.index <= expiry.invoke_index]
                if not before:
                    continue
                last = before[-1]
                holds = (last.invoke.f == "acquire" and last.outcome != "fail") or (
                    last.invoke.f == "release" and last.outcome != "ok"
                )
                if holds:
                    out.setdefault(key, []).append(expiry)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_expiries_are_attached_to_exactly_the_keys_a_process_may_hold(seed: int) -> None:
    ops = lock_history(seed=seed, ops=3000, locks=4, processes=6, info_rate=0.05)
    paired = PairedHistory.of(ops)
    points = session_expiries(paired.calls, paired.end_index, paired.end_time)
    assert sum(map(len, points.values())) > 10
    expected = _expiries_straight_from_the_definition(list(paired.calls), points)
    assert expiries_by_key(paired.calls, points) == expected
