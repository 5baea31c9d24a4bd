"""The watches checker on sessions that take the same lock again and again (issue 8): grants are
matched to events by token, so a valid stream is valid, and a missing, duplicated or reordered
event is still found."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.checking import run_checkers
from lockbench.history import Op, read_history
from tests.bench.checker.checker_histories import history

# (process, "acquire" | "release", token): process 0 takes lock L three times, process 1 once.
CHANGES: list[tuple[int, str, int]] = [
    (0, "acquire", 1),
    (0, "release", 1),
    (0, "acquire", 2),
    (0, "release", 2),
    (1, "acquire", 3),
    (1, "release", 3),
    (0, "acquire", 4),
    (0, "release", 4),
]


def lock_ops(changes: list[tuple[int, str, int]], *, tokens: bool) -> list[tuple[Any, ...]]:
    records: list[tuple[Any, ...]] = []
    for process, f, token in changes:
        records.append((process, "invoke", f, "L", {"timeout": 1} if f == "acquire" else None))
        if f == "acquire":
            value = token if tokens else None
            records.append((process, "ok", f, "L", value, {"session": f"s{process}"}))
        else:
            records.append((process, "ok", f, "L", None))
    return records


def event_of(change: tuple[int, str, int], revision: int, *, tokens: bool) -> dict[str, Any]:
    process, f, token = change
    return {
        "revision": revision,
        "kind": "acquired" if f == "acquire" else "released",
        "lock": "L",
        "session": f"s{process}",
        "token": token if tokens else None,
    }


def stream(*, tokens: bool = True) -> list[dict[str, Any]]:
    """The complete, correctly ordered stream: revision i + 1 for change i."""
    return [event_of(c, i + 1, tokens=tokens) for i, c in enumerate(CHANGES)]


def watched(events: list[dict[str, Any]], *, tokens: bool = True, before: int = 0) -> list[Op]:
    """Process 9 watches prefix L while CHANGES happen; ``before`` changes happen before it."""
    return history(
        *lock_ops(CHANGES[:before], tokens=tokens),
        (9, "invoke", "watch", None, {"prefix": "L", "from_revision": 0}),
        *lock_ops(CHANGES[before:], tokens=tokens),
        (9, "ok", "watch", None, events),
    )


def kinds(ops: list[Op]) -> list[str]:
    verdict, results = run_checkers(ops, ["watches"], {})
    result = results["watches"]
    assert verdict == result.verdict
    assert (verdict == "valid") == (not result.anomalies)
    return [anomaly.kind for anomaly in result.anomalies]


@pytest.mark.parametrize("tokens", [True, False], ids=["tokens", "no-tokens"])
def test_a_session_reacquiring_the_same_lock_gives_a_valid_stream(tokens: bool) -> None:
    assert kinds(watched(stream(tokens=tokens), tokens=tokens)) == []


def test_a_stream_that_replays_changes_from_before_the_watch_is_valid_without_tokens() -> None:
    # The watch started from an old revision: the first two changes came before it and are
    # replayed, so the first "acquired by s0" event is not the grant made while it ran.
    ops = watched(stream(tokens=False), tokens=False, before=2)
    assert kinds(ops) == []


@pytest.mark.parametrize("tokens", [True, False], ids=["tokens", "no-tokens"])
def test_the_missing_event_of_a_repeated_grant_is_found(tokens: bool) -> None:
    events = stream(tokens=tokens)
    del events[2]  # process 0's second grant (token 2)
    found = kinds(watched(events, tokens=tokens))
    assert found == ["watch-missed-event"]


def test_the_missing_event_names_the_grant_by_token() -> None:
    events = stream()
    del events[6]  # process 0's third grant (token 4)
    _, results = run_checkers(watched(events), ["watches"], {})
    (anomaly,) = results["watches"].anomalies
    assert anomaly.kind == "watch-missed-event"
    assert "token 4" in anomaly.explanation
    assert anomaly.processes == (9, 0)


def test_a_repeated_grant_delivered_twice_is_a_duplicate() -> None:
    events = stream()
    events.insert(3, dict(events[2]))  # token 2's grant again, same revision
    assert kinds(watched(events)) == ["watch-duplicate"]


def test_a_repeated_grant_delivered_twice_under_two_revisions_is_a_duplicate() -> None:
    events = stream()
    events.append({**events[2], "revision": 99})
    assert kinds(watched(events)) == ["watch-duplicate"]


def test_revisions_that_go_backwards_are_out_of_order() -> None:
    events = stream()
    events[2], events[3] = events[3], events[2]  # release of token 2 before its grant
    assert set(kinds(watched(events))) == {"watch-out-of-order"}


@pytest.mark.parametrize("tokens", [True, False], ids=["tokens", "no-tokens"])
def test_events_in_an_order_real_time_forbids_are_out_of_order(tokens: bool) -> None:
    # Revisions increase, but the service numbered process 0's second release after process 1's
    # grant, which was invoked only after that release completed.
    order = [0, 1, 2, 4, 3, 5, 6, 7]
    events = [event_of(CHANGES[i], revision + 1, tokens=tokens) for revision, i in enumerate(order)]
    found = kinds(watched(events, tokens=tokens))
    assert found == ["watch-out-of-order"]


def test_a_grant_with_another_tokens_event_is_not_matched_to_it() -> None:
    # The second grant's event carries token 1 again (the first grant's): the first grant's
    # event is duplicated and the second grant's is missing.
    events = stream()
    events[2] = {**events[2], "token": 1}
    assert sorted(kinds(watched(events))) == ["watch-duplicate", "watch-missed-event"]


WATCH_RUN = """\
name: watch-reacquire
backend: memory
workload: watch
workload_options: {watchers: 2, duration: 0.5, locks: 1, hold: 0.005, think: 0.005}
time_limit: 2
concurrency: 5
op_timeout: 2
ttl: 2
seed: 3
"""


@pytest.mark.process
def test_a_real_watch_run_where_sessions_reacquire_locks_is_valid(tmp_path: Path) -> None:
    """A real run of the watch workload (in-process memory backend): every locker's session takes
    the one lock many times while the watchers record; the earlier matching by session reported
    thousands of false reorderings on such a run."""
    test_file = tmp_path / "watch.yaml"
    test_file.write_text(WATCH_RUN, encoding="utf-8")
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(test_file), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ops = read_history(store / "latest" / "history.jsonl")
    grants = Counter((op.session, op.key) for op in ops if op.f == "acquire" and op.type == "ok")
    assert max(grants.values()) >= 10  # the case under test: one session, one lock, many grants
    verdict, results = run_checkers(ops, ["watches"], {})
    assert results["watches"].stats["events"] >= sum(grants.values())
    assert verdict == "valid", [a.explanation for a in results["watches"].anomalies]
