"""A message with a nonsense type, sender, term or index is logged and dropped: it never raises,
never changes the log or the durable state."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.raft.core import RaftNode
from reference_impl.raft.types import (
    AppendEntries,
    AppendResponse,
    Entry,
    InstallSnapshot,
    Message,
    ReadIndexResponse,
    Role,
    Snapshot,
    SnapshotMeta,
    VoteRequest,
)
from tests.reference_impl.raft.raft_sim import ManualCluster


def _state(node: RaftNode) -> tuple[object, ...]:
    return (
        node.role,
        node.term,
        node.vote,
        node.commit_index,
        tuple(node.log.entries),
        node.log.snapshot_index,
    )


def _cluster_with_log() -> ManualCluster:
    cluster = ManualCluster(3)
    leader = cluster.elect("n1")
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.process("n1")
    cluster.deliver()
    cluster.tick_all()
    return cluster


NONSENSE: list[tuple[str, Message]] = [
    ("wrong destination", AppendEntries("n1", "n9", 1, 0, 0, (), 0)),
    ("unknown sender", AppendEntries("zz", "n2", 1, 0, 0, (), 0)),
    ("sender is the node itself", AppendEntries("n2", "n2", 1, 0, 0, (), 0)),
    ("negative term", VoteRequest("n3", "n2", -4, 0, 0)),
    ("append in term 0", AppendEntries("n1", "n2", 0, 0, 0, (), 0)),
    ("negative index", AppendEntries("n1", "n2", 1, -1, 0, (), 0)),
    ("prev term beyond term", AppendEntries("n1", "n2", 1, 3, 9, (), 0)),
    ("prev index without a term", AppendEntries("n1", "n2", 1, 3, 0, (), 0)),
    (
        "entries with a gap",
        AppendEntries("n1", "n2", 1, 6, 1, (Entry(1, 7, b"a"), Entry(1, 9, b"b")), 9),
    ),
    ("entry term beyond term", AppendEntries("n1", "n2", 1, 6, 1, (Entry(5, 7, b"a"),), 7)),
    (
        "entry terms going down",
        AppendEntries("n1", "n2", 3, 6, 1, (Entry(3, 7, b"a"), Entry(2, 8, b"b")), 0),
    ),
    ("vote log term beyond campaign term", VoteRequest("n3", "n2", 2, 10, 7)),
    ("negative response index", AppendResponse("n1", "n2", 1, True, -3)),
    (
        "snapshot term beyond message term",
        InstallSnapshot("n1", "n2", 1, Snapshot(SnapshotMeta(3, 8, ("n1",)), b"")),
    ),
    ("snapshot at index 0", InstallSnapshot("n1", "n2", 1, Snapshot(SnapshotMeta(0, 1, ()), b""))),
    ("negative read index", ReadIndexResponse("n1", "n2", 1, b"x", -1, True)),
]


@pytest.mark.parametrize(("why", "msg"), NONSENSE, ids=[why for why, _ in NONSENSE])
def test_a_nonsense_message_is_logged_and_dropped(
    why: str, msg: Message, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _cluster_with_log()
    follower = cluster.nodes["n2"]
    before = _state(follower)
    with caplog.at_level(logging.WARNING, logger="reference_impl.raft.core"):
        follower.step(msg)
    assert _state(follower) == before
    assert not follower.ready().messages, f"{why}: nothing must be answered"
    assert "dropped invalid" in caplog.text


def test_an_object_that_is_not_a_message_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    cluster = _cluster_with_log()
    leader = cluster.nodes["n1"]
    before = _state(leader)
    with caplog.at_level(logging.WARNING):
        leader.step("not a message")  # type: ignore[arg-type]
    assert _state(leader) == before
    assert "unknown message type" in caplog.text


def test_a_second_leader_claiming_the_same_term_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = _cluster_with_log()
    leader = cluster.nodes["n1"]
    before = _state(leader)
    forged = AppendEntries("n2", "n1", leader.term, 0, 0, (Entry(1, 1, b"evil"),), 1)
    with caplog.at_level(logging.ERROR):
        leader.step(forged)
    assert _state(leader) == before
    assert leader.role is Role.LEADER
    assert "claims leadership" in caplog.text


def test_an_append_rewriting_committed_entries_cannot_change_them() -> None:
    cluster = _cluster_with_log()
    follower = cluster.nodes["n2"]
    committed = [e for e in follower.log.entries if e.index <= follower.commit_index]
    rewrite = tuple(Entry(1, e.index, b"rewritten") for e in committed)
    follower.step(AppendEntries("n1", "n2", follower.term, 0, 0, rewrite, 0))
    assert [e for e in follower.log.entries if e.index <= follower.commit_index] == committed


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n1", "n3"]),
            st.integers(0, 4),
            st.integers(0, 12),
            st.integers(0, 4),
            st.lists(st.tuples(st.integers(0, 4), st.binary(max_size=3)), max_size=3),
            st.integers(0, 15),
        ),
        max_size=12,
    )
)
@settings(max_examples=80, deadline=None)
def test_random_appends_never_raise_nor_change_committed_entries(
    steps: list[tuple[str, int, int, int, list[tuple[int, bytes]], int]],
) -> None:
    logging.disable(logging.WARNING)
    try:
        cluster = _cluster_with_log()
        follower = cluster.nodes["n2"]
        committed = [e for e in follower.log.entries if e.index <= follower.commit_index]
        for src, term, prev_index, prev_term, raw_entries, commit in steps:
            entries = tuple(
                Entry(entry_term, prev_index + offset + 1, data)
                for offset, (entry_term, data) in enumerate(raw_entries)
            )
            follower.step(AppendEntries(src, "n2", term, prev_index, prev_term, entries, commit))
            cluster.process("n2")
            assert follower.commit_index <= follower.last_index
            assert follower.log.entries[: len(committed)] == committed
    finally:
        logging.disable(logging.NOTSET)
