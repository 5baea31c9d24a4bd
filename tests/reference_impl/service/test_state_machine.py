"""The lock state machine: grants, queues, tokens, sessions, dedup, watches, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.service.commands import (
    Acquire,
    CancelWait,
    CloseSession,
    Command,
    EndLockDelay,
    ExpireSession,
    OpenSession,
    Release,
    encode_command,
)
from reference_impl.service.events import RevisionCompacted, WatchEvent
from reference_impl.service.outcome import Outcome
from reference_impl.service.state_machine import LockStateMachine


class Log:
    """Feeds commands to a state machine with increasing indexes, like a committed Raft log."""

    def __init__(self, machine: LockStateMachine | None = None) -> None:
        self.machine = machine or LockStateMachine()
        self.index = self.machine.applied_index
        self.seq = 0

    def apply(self, command: Command) -> Outcome:
        self.index += 1
        return self.machine.apply(self.index, encode_command(command))

    def open(self, client: str, ttl: float = 10.0) -> str:
        outcome = self.apply(OpenSession(client, self.next_seq(), ttl, 0.0))
        assert outcome.session is not None
        return outcome.session

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def acquire(
        self, client: str, session: str, name: str, *, shared: bool = False, wait: bool = True
    ) -> Outcome:
        return self.apply(Acquire(client, self.next_seq(), session, name, shared, wait))

    def release(self, client: str, session: str, name: str) -> Outcome:
        return self.apply(Release(client, self.next_seq(), session, name))


def test_grant_token_is_the_index_of_the_granting_entry() -> None:
    log = Log()
    a = log.open("a")
    outcome = log.acquire("a", a, "x")
    assert outcome.status == "ok"
    assert outcome.token == log.index
    assert log.machine.check_token("x", log.index)
    assert not log.machine.check_token("x", log.index - 1)


def test_reacquire_by_holder_is_idempotent() -> None:
    log = Log()
    a = log.open("a")
    first = log.acquire("a", a, "x")
    again = log.acquire("a", a, "x")
    assert again.status == "ok"
    assert again.token == first.token


def test_waiters_are_granted_in_fifo_order_with_increasing_tokens() -> None:
    log = Log()
    sessions = [log.open(c) for c in "abc"]
    first = log.acquire("a", sessions[0], "x").token
    assert first is not None
    tokens = [first]
    assert log.acquire("b", sessions[1], "x").status == "queued"
    assert log.acquire("c", sessions[2], "x").status == "queued"
    for i in range(3):
        view = log.machine.owner("x")
        assert [h.session for h in view.holders] == [sessions[i]]
        if i:
            assert view.token is not None
            tokens.append(view.token)
        log.release("abc"[i], sessions[i], "x")
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 3
    assert log.machine.owner("x").holders == ()


def test_try_acquire_on_a_held_lock_answers_busy_and_leaves_no_waiter() -> None:
    log = Log()
    a, b = log.open("a"), log.open("b")
    log.acquire("a", a, "x")
    assert log.acquire("b", b, "x", wait=False).status == "busy"
    assert log.machine.owner("x").waiters == ()


def test_shared_holders_coexist_and_exclusive_waits_for_all() -> None:
    log = Log()
    a, b, c = log.open("a"), log.open("b"), log.open("c")
    assert log.acquire("a", a, "x", shared=True).status == "ok"
    assert log.acquire("b", b, "x", shared=True).status == "ok"
    assert log.acquire("c", c, "x").status == "queued"
    log.release("a", a, "x")
    assert log.machine.owner("x").waiters == (c,)
    log.release("b", b, "x")
    assert [h.session for h in log.machine.owner("x").holders] == [c]


def test_shared_request_behind_an_exclusive_waiter_does_not_barge() -> None:
    log = Log()
    a, b, c = log.open("a"), log.open("b"), log.open("c")
    log.acquire("a", a, "x", shared=True)
    log.acquire("b", b, "x")
    assert log.acquire("c", c, "x", shared=True).status == "queued"


def test_releasing_a_lock_not_held_is_an_error() -> None:
    log = Log()
    a = log.open("a")
    outcome = log.release("a", a, "x")
    assert outcome.status == "error"
    assert outcome.error == "not-holder"


def test_expiry_releases_locks_and_grants_the_next_waiter() -> None:
    log = Log()
    a, b = log.open("a"), log.open("b")
    first = log.acquire("a", a, "x").token
    log.acquire("b", b, "x")
    log.apply(ExpireSession(a, 0.0))
    view = log.machine.owner("x")
    assert [h.session for h in view.holders] == [b]
    assert view.token is not None
    assert first is not None
    assert view.token > first
    assert log.acquire("a", a, "y").error == "session-expired"
    kinds = [e.kind for e in log.machine.watch_backlog("", 1)]
    assert kinds == ["acquired", "expired", "acquired"]


def test_lock_delay_holds_the_lock_until_the_leader_ends_it() -> None:
    log = Log()
    a, b = log.open("a"), log.open("b")
    log.acquire("a", a, "x")
    log.apply(ExpireSession(a, 5.0))
    assert log.acquire("b", b, "x").status == "queued"
    assert log.machine.owner("x").delayed
    log.apply(EndLockDelay("x"))
    assert [h.session for h in log.machine.owner("x").holders] == [b]


def test_cancel_wait_removes_a_queued_waiter_but_not_a_holder() -> None:
    log = Log()
    a, b = log.open("a"), log.open("b")
    log.acquire("a", a, "x")
    log.acquire("b", b, "x")
    assert log.apply(CancelWait(b, "x")).message == "cancelled"
    assert log.machine.owner("x").waiters == ()
    assert log.apply(CancelWait(a, "x")).message == "not waiting"
    assert [h.session for h in log.machine.owner("x").holders] == [a]


def test_a_retried_request_is_applied_once() -> None:
    log = Log()
    a = log.open("a")
    log.acquire("a", a, "x")
    release = Release("a", 99, a, "x")
    assert log.apply(release).status == "ok"
    assert log.apply(release).status == "ok"  # the retry gets the cached answer, not not-holder
    opened = OpenSession("z", 1, 10.0, 0.0)
    first, second = log.apply(opened), log.apply(opened)
    assert first.session == second.session
    assert len(log.machine.sessions) == 2


def test_close_session_releases_everything() -> None:
    log = Log()
    a = log.open("a")
    log.acquire("a", a, "x")
    log.apply(CloseSession("a", log.next_seq(), a))
    assert log.machine.owner("x").holders == ()
    assert log.machine.sessions == {}


def test_undecodable_entries_are_answered_not_raised() -> None:
    machine = LockStateMachine()
    assert machine.apply(1, b"\xff garbage").error == "bad-request"
    assert machine.apply(2, b'{"op":"acquire"}').error == "bad-request"
    assert machine.apply(3, b"").status == "ok"


def test_watch_resume_from_a_compacted_revision_is_refused() -> None:
    log = Log(LockStateMachine(event_log_capacity=4))
    a = log.open("a")
    for _ in range(5):
        log.acquire("a", a, "x")
        log.release("a", a, "x")
    with pytest.raises(RevisionCompacted) as excinfo:
        list(log.machine.watch_backlog("", 1))
    assert excinfo.value.oldest == 7
    assert [e.revision for e in log.machine.watch_backlog("", 7)] == [7, 8, 9, 10]
    assert list(log.machine.watch_backlog("", 11)) == []  # the future is fine


def test_unsafe_reuse_tokens_counts_from_one_after_restore() -> None:
    log = Log(LockStateMachine(unsafe_reuse_tokens=True))
    a = log.open("a")
    first = log.acquire("a", a, "x").token
    log.release("a", a, "x")
    restored = LockStateMachine(unsafe_reuse_tokens=True)
    restored.restore(log.machine.snapshot(), log.index)
    again = Log(restored)
    again.seq = 100
    assert again.acquire("a", a, "x").token == first


commands = st.lists(
    st.tuples(
        st.sampled_from(["open", "acq", "try", "shared", "rel", "expire", "cancel", "close"]),
        st.integers(0, 3),
        st.sampled_from(["x", "y", "z/1"]),
    ),
    max_size=60,
)


def drive(log: Log, ops: list[tuple[str, int, str]], sessions: list[str]) -> None:
    for op, who, name in ops:
        client = f"c{who}"
        if op == "open" or not sessions:
            sessions.append(log.open(client))
            continue
        session = sessions[who % len(sessions)]
        if op in ("acq", "try", "shared"):
            log.acquire(client, session, name, shared=op == "shared", wait=op != "try")
        elif op == "rel":
            log.release(client, session, name)
        elif op == "expire":
            log.apply(ExpireSession(session, 1.0 if who % 2 else 0.0))
        elif op == "cancel":
            log.apply(CancelWait(session, name))
        else:
            log.apply(CloseSession(client, log.next_seq(), session))


@settings(max_examples=150, deadline=None)
@given(commands, commands)
def test_snapshot_restore_then_apply_equals_applying_everything(
    before: list[tuple[str, int, str]], after: list[tuple[str, int, str]]
) -> None:
    whole = Log()
    sessions: list[str] = []
    drive(whole, before, sessions)
    restored = LockStateMachine()
    restored.restore(whole.machine.snapshot(), whole.index)
    other = Log(restored)
    other.seq = whole.seq
    drive(whole, after, list(sessions))
    drive(other, after, list(sessions))
    assert whole.machine.snapshot() == other.machine.snapshot()
    # invariants: an exclusive holder is alone; tokens only grow; revisions strictly increase
    for lock in whole.machine.locks.values():
        exclusive = [h for h in lock.holders.values() if not h.shared]
        assert not exclusive or len(lock.holders) == 1
    revisions = [e.revision for e in whole.machine.watch_backlog("", 1)]
    assert revisions == sorted(set(revisions))
    last_token: dict[str, int] = {}
    for event in whole.machine.watch_backlog("", 1):
        if event.kind == "acquired" and event.token is not None:
            assert event.token >= last_token.get(event.name, 0)
            last_token[event.name] = event.token


def test_watch_event_json_round_trip() -> None:
    event = WatchEvent(3, "acquired", "x", "s1", 7)
    assert WatchEvent.from_json(event.to_json()) == event
