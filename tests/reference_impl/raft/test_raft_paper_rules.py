"""The Raft paper's rules one by one (after etcd's raft_paper_test.go), plus the extensions the
reference server relies on: PreVote, CheckQuorum, ReadIndex, snapshots, leadership transfer."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.core import RaftNode
from reference_impl.raft.errors import NotLeader, ProposalDropped
from reference_impl.raft.types import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    RestoredState,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from tests.reference_impl.raft.raft_sim import ManualCluster

EMPTY = RestoredState(HardState(), None, ())


def _node(node_id: str = "n1", restored: RestoredState = EMPTY, **config: object) -> RaftNode:
    return RaftNode(
        RaftConfig(node_id, ("n1", "n2", "n3"), **config),  # type: ignore[arg-type]
        restored,
        random.Random(0),
    )


def _recording(sent: list[Message]) -> Callable[[Message], bool]:
    """A delivery filter that lets every message through and keeps a copy in ``sent``."""

    def accept(msg: Message) -> bool:
        sent.append(msg)
        return True

    return accept


def _elected_cluster(size: int = 3, **config: Any) -> tuple[ManualCluster, RaftNode]:
    cluster = ManualCluster(size, **config)
    leader = cluster.elect("n1")
    assert leader.role is Role.LEADER
    return cluster, leader


# -- Election (5.2) ----------------------------------------------------------------------------


def test_a_follower_that_hears_nothing_campaigns_and_wins_with_a_majority() -> None:
    cluster, leader = _elected_cluster()
    assert leader.term == 1
    assert {cluster.nodes[i].leader for i in cluster.ids} == {"n1"}
    assert all(cluster.nodes[i].term == 1 for i in cluster.ids)


def test_a_new_leader_commits_a_noop_entry_of_its_term() -> None:
    cluster, leader = _elected_cluster()
    last = leader.log.entry(leader.last_index)
    assert last.kind is EntryKind.NOOP
    assert last.term == leader.term
    assert leader.commit_index == leader.last_index
    cluster.tick_all()
    assert all(cluster.nodes[i].commit_index == leader.last_index for i in cluster.ids)


def test_a_node_grants_one_vote_per_term_even_across_a_restart() -> None:
    cluster = ManualCluster(3)
    node = cluster.nodes["n1"]
    node.step(VoteRequest("n2", "n1", 1, 0, 0))
    cluster.process("n1")
    assert cluster.outbox[-1] == VoteResponse("n1", "n2", 1, True)
    cluster.crash("n1")  # everything was fsynced: the vote survives
    node = cluster.start("n1")
    node.step(VoteRequest("n3", "n1", 1, 0, 0))
    cluster.process("n1")
    assert cluster.outbox[-1] == VoteResponse("n1", "n3", 1, False)
    assert node.vote == "n2"


def test_the_vote_restriction_keeps_a_node_with_a_shorter_log_from_winning() -> None:
    # No PreVote/CheckQuorum here: the leader lease would also refuse the vote, hiding the rule.
    cluster, leader = _elected_cluster(pre_vote=False, check_quorum=False)
    cluster.isolate("n3")
    leader.propose(b"x")
    cluster.process("n1")
    cluster.deliver()
    assert leader.commit_index == 2
    cluster.crash("n1")
    cluster.heal()
    candidate = cluster.elect("n3")
    assert candidate.role is not Role.LEADER
    assert cluster.nodes["n2"].vote != "n3"
    assert cluster.elect("n2").role is Role.LEADER


def test_a_leader_steps_down_when_it_sees_a_higher_term() -> None:
    _, leader = _elected_cluster()
    leader.step(AppendResponse("n2", "n1", 5, False, 0))
    assert leader.role is Role.FOLLOWER
    assert leader.term == 5


# -- Replication and commitment (5.3, 5.4.2) --------------------------------------------------


def test_figure_8_an_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    old_log = (Entry(1, 1, b"a"), Entry(1, 2, b"b"))
    node = _node(restored=RestoredState(HardState(term=1), None, old_log), pre_vote=False)
    for _ in range(node.config.election_ticks_max):
        node.tick()
    assert node.role is Role.CANDIDATE
    assert node.term == 2
    node.step(VoteResponse("n2", "n1", 2, True))
    assert node.role is Role.LEADER  # type: ignore[comparison-overlap]  # step() changed it
    assert node.log.entry(3).term == 2  # the leader's noop
    node.advance(node.ready())  # the noop is durable on the leader
    node.step(AppendResponse("n2", "n1", 2, True, 2))
    assert node.commit_index == 0, "entry 2 (term 1) on a majority must not commit by counting"
    node.step(AppendResponse("n2", "n1", 2, True, 3))
    assert node.commit_index == 3, "a current-term entry commits, and everything before it"


def test_a_leader_counts_its_own_entries_toward_the_commit_only_once_durable() -> None:
    node = _node(pre_vote=False)
    for _ in range(node.config.election_ticks_max):
        node.tick()
    node.step(VoteResponse("n2", "n1", 1, True))
    assert node.role is Role.LEADER
    noop = node.ready()
    assert [e.index for e in noop.entries] == [1]
    node.advance(noop, entries_persisted=False)  # written in the background
    assert not node.ready().entries, "entries being written are not handed out twice"
    node.step(AppendResponse("n2", "n1", 1, True, 1))
    assert node.commit_index == 0, "one follower plus a leader whose write is pending is no quorum"
    node.persisted(1, 1)
    assert node.commit_index == 1
    index = node.propose(b"x")
    node.advance(node.ready(), entries_persisted=False)
    node.step(AppendResponse("n2", "n1", 1, True, index))
    node.step(AppendResponse("n3", "n1", 1, True, index))
    assert node.commit_index == index, "a majority of followers commits without the leader's disk"
    node.persisted(index, 1)
    assert node.commit_index == index


def test_conflicting_uncommitted_entries_are_overwritten_with_few_round_trips() -> None:
    cluster, old_leader = _elected_cluster(check_quorum=False)  # n3 may vote at once
    cluster.isolate("n1")
    for i in range(50):
        old_leader.propose(f"lost{i}".encode())
    cluster.process("n1")
    cluster.deliver()
    new_leader = cluster.elect("n2")
    assert new_leader.role is Role.LEADER
    assert new_leader.term == 2
    for i in range(5):
        new_leader.propose(f"kept{i}".encode())
    cluster.process("n2")
    cluster.deliver()
    cluster.heal()
    rejections = 0

    def count(msg: object) -> bool:
        nonlocal rejections
        if isinstance(msg, AppendResponse) and msg.src == "n1" and not msg.success:
            rejections += 1
        return True

    for _ in range(3):
        new_leader.tick()
        cluster.process("n2")
        cluster.deliver(count)
    assert rejections <= 2, f"fast back-tracking should need <= 2 rejections, took {rejections}"
    n1_log = [(e.index, e.term, e.data) for e in cluster.nodes["n1"].log.entries]
    n2_log = [(e.index, e.term, e.data) for e in new_leader.log.entries]
    assert n1_log == n2_log
    assert not any(b"lost" in data for _, _, data in n1_log)
    assert cluster.machines["n1"].commands == cluster.machines["n2"].commands


def test_proposals_made_together_travel_in_one_append_per_follower() -> None:
    cluster, leader = _elected_cluster()
    for i in range(100):
        leader.propose(f"c{i}".encode())
    cluster.process("n1")
    appends = [m for m in cluster.outbox if isinstance(m, AppendEntries)]
    assert sorted(m.dst for m in appends) == ["n2", "n3"]
    assert all(len(m.entries) == 100 for m in appends)


def test_appends_are_pipelined_up_to_max_inflight() -> None:
    cluster, leader = _elected_cluster(max_entries_per_append=10, max_inflight=4)
    cluster.tick_all()  # followers reach the replicate state
    cluster.outbox.clear()
    for i in range(100):
        leader.propose(f"c{i}".encode())
    cluster.process("n1")
    to_n2 = [m for m in cluster.outbox if isinstance(m, AppendEntries) and m.dst == "n2"]
    assert len(to_n2) == 4
    assert [m.entries[0].index for m in to_n2] == [2, 12, 22, 32]
    cluster.deliver()
    assert leader.commit_index == leader.last_index == 101


def test_a_follower_rejects_an_append_whose_previous_entry_it_lacks() -> None:
    node = _node("n2")
    node.step(AppendEntries("n1", "n2", 1, 5, 1, (Entry(1, 6, b"x"),), 6))
    response = node.ready().messages[-1]
    assert isinstance(response, AppendResponse)
    assert not response.success
    assert response.hint_index == 0
    assert node.last_index == 0
    assert node.commit_index == 0


# -- PreVote and CheckQuorum --------------------------------------------------------------------


def test_prevote_keeps_a_rejoining_node_from_disrupting_a_healthy_leader() -> None:
    cluster, leader = _elected_cluster(pre_vote=True)
    cluster.isolate("n3")
    for _ in range(30):
        cluster.tick_all()
    assert cluster.nodes["n3"].term == 1, "a pre-candidate must not bump its term"
    cluster.heal()
    cluster.tick_all(3)
    assert leader.role is Role.LEADER
    assert leader.term == 1
    assert cluster.nodes["n3"].leader == "n1"


def test_without_prevote_a_rejoining_node_forces_a_new_election() -> None:
    cluster, leader = _elected_cluster(pre_vote=False)
    cluster.isolate("n3")
    for _ in range(30):
        cluster.tick_all()
    assert cluster.nodes["n3"].term > 1
    cluster.heal()
    cluster.tick_all(3)
    assert leader.term > 1, "the contrast case: the rejoining node's higher term deposes n1"


def test_checkquorum_makes_an_isolated_leader_step_down() -> None:
    cluster, leader = _elected_cluster()
    cluster.isolate("n1")
    for _ in range(2 * leader.config.election_ticks_min):
        cluster.tick("n1")
    assert leader.role is Role.FOLLOWER
    with pytest.raises(NotLeader):
        leader.propose(b"x")


def test_without_checkquorum_the_unsafe_switch_lets_a_deposed_leader_serve_stale_reads() -> None:
    cluster, old = _elected_cluster(check_quorum=False, unsafe_no_check_quorum=True)
    cluster.isolate("n1")
    for _ in range(4 * old.config.election_ticks_max):
        cluster.tick_all()
    new = cluster.leader()
    assert new is not None
    assert new.id != "n1"
    assert old.role is Role.LEADER
    index = new.propose(b"x")
    cluster.process(new.id)
    cluster.deliver()
    assert new.commit_index >= index
    old.read_index(b"stale")
    cluster.process("n1")
    assert cluster.read_states["n1"] == [(b"stale", old.commit_index)]
    assert old.commit_index < index, "the deposed leader answers from its own, older state"


# -- ReadIndex -----------------------------------------------------------------------------------


def test_readindex_on_a_follower_returns_an_index_covering_every_acknowledged_write() -> None:
    cluster, leader = _elected_cluster()
    index = leader.propose(b"w")
    cluster.process("n1")
    cluster.deliver()
    assert leader.commit_index >= index
    follower = cluster.nodes["n2"]
    follower.read_index(b"r1")
    cluster.process("n2")
    cluster.deliver()
    ((ctx, read_index),) = cluster.read_states["n2"]
    assert ctx == b"r1"
    assert read_index >= index
    assert cluster.machines["n2"].applied >= read_index


def test_readindex_on_the_leader_waits_for_a_quorum_heartbeat() -> None:
    cluster, leader = _elected_cluster()
    cluster.isolate("n1")
    leader.read_index(b"r")
    cluster.process("n1")
    cluster.deliver()
    assert cluster.read_states["n1"] == [], "no quorum confirmed the leadership: no answer"
    cluster.heal()
    cluster.tick("n1")
    cluster.deliver()
    assert [ctx for ctx, _ in cluster.read_states["n1"]] == [b"r"]


def test_lease_reads_answer_at_once_within_the_lease_and_not_after_it() -> None:
    cluster = ManualCluster(3, lease_reads=True)
    leader = None
    for _ in range(40):  # fresh nodes refuse votes for an election timeout (boot lease)
        cluster.tick_all()
        leader = cluster.leader()
        if leader is not None and leader.commit_index == leader.last_index:
            break
    assert leader is not None
    cluster.tick_all()  # a heartbeat round acknowledged by a majority starts the lease
    cluster.outbox.clear()
    leader.read_index(b"lease")
    cluster.process(leader.id)
    assert [ctx for ctx, _ in cluster.read_states[leader.id]] == [b"lease"]
    assert not cluster.outbox, "a lease read sends nothing"
    cluster.isolate(leader.id)
    for _ in range(leader.config.election_ticks_min):
        cluster.tick(leader.id)
    if leader.role is Role.LEADER:
        leader.read_index(b"expired")
        cluster.process(leader.id)
        assert b"expired" not in [ctx for ctx, _ in cluster.read_states[leader.id]]


def test_with_lease_reads_a_restarted_node_does_not_vote_inside_a_possible_lease() -> None:
    node = _node("n2", lease_reads=True)
    node.step(VoteRequest("n3", "n2", 1, 0, 0, pre_vote=True))
    assert not node.ready().messages, "a fresh node may have acked a lease before it crashed"
    for _ in range(node.config.election_ticks_min - 1):
        node.tick()
    assert node.role is Role.FOLLOWER
    node.step(VoteRequest("n3", "n2", 1, 0, 0, pre_vote=True))
    assert not node.ready().messages
    node.tick()
    node.step(VoteRequest("n3", "n2", 1, 0, 0, pre_vote=True))
    assert node.ready().messages == (VoteResponse("n2", "n3", 1, True, pre_vote=True),)


# -- Snapshots and transfer ---------------------------------------------------------------------


def test_a_follower_behind_the_compacted_log_catches_up_by_snapshot() -> None:
    cluster, leader = _elected_cluster()
    cluster.isolate("n3")
    for i in range(20):
        leader.propose(f"c{i}".encode())
    cluster.process("n1")
    cluster.deliver()
    assert leader.applied_index == leader.last_index == 21
    snapshot = leader.compact(leader.applied_index, cluster.machines["n1"].snapshot())
    cluster.storages["n1"].save_snapshot(snapshot)
    assert leader.log.snapshot_index == 21
    assert not leader.log.entries
    cluster.heal()
    sent: list[Message] = []
    for _ in range(3):
        cluster.tick("n1")
        cluster.deliver(_recording(sent))
    assert any(isinstance(m, InstallSnapshot) and m.dst == "n3" for m in sent)
    assert cluster.nodes["n3"].log.snapshot_index == 21
    assert cluster.machines["n3"].commands == cluster.machines["n1"].commands
    leader.propose(b"after")
    cluster.process("n1")
    cluster.deliver()
    cluster.tick("n1")
    cluster.deliver()
    assert cluster.machines["n3"].commands[-1] == "after"


def test_leadership_transfer_hands_over_once_the_target_is_up_to_date() -> None:
    cluster, leader = _elected_cluster()
    leader.transfer_leadership("n2")
    cluster.process("n1")
    sent: list[Message] = []
    cluster.deliver(_recording(sent))
    assert any(isinstance(m, TimeoutNow) for m in sent)
    assert cluster.nodes["n2"].role is Role.LEADER
    assert cluster.nodes["n2"].term == 2
    assert leader.role is Role.FOLLOWER
    assert leader.leader == "n2"


def test_proposals_are_refused_during_a_transfer_and_accepted_after_it_times_out() -> None:
    cluster, leader = _elected_cluster()
    cluster.isolate("n2")
    leader.transfer_leadership("n2")
    with pytest.raises(ProposalDropped):
        leader.propose(b"x")
    for _ in range(leader.config.election_ticks_min):
        cluster.tick_all()
    assert leader.role is Role.LEADER
    assert leader.propose(b"x") > 0


def test_figure_8_scenario_an_entry_counted_on_a_majority_in_an_old_term_can_be_overwritten() -> (
    None
):
    """The paper's Figure 8, step by step with 5 nodes: had n1 committed index 2 (an old-term
    entry) by counting replicas in term 3, n5 would later overwrite a committed entry."""
    cluster = ManualCluster(5, pre_vote=False, check_quorum=False, max_entries_per_append=1)
    n1 = cluster.elect("n1")  # term 1; index 1 (noop) committed everywhere
    cluster.tick_all()
    # (a) n1 replicates index 2 (term 1) to n2 only, then crashes.
    n1.propose(b"a")
    cluster.process("n1")
    cluster.deliver(lambda m: m.dst == "n2" or m.src == "n2")
    cluster.crash("n1")
    # (b) n5 wins term 2 with n3 and n4, appends its noop at index 2, replicates nothing, crashes.
    n5 = cluster.nodes["n5"]
    while n5.role is not Role.CANDIDATE:
        n5.tick()
    cluster.process("n5")
    cluster.deliver(lambda m: not isinstance(m, AppendEntries))
    assert n5.role is Role.LEADER  # type: ignore[comparison-overlap]  # the votes changed it
    assert n5.term == 2
    cluster.crash("n5")
    cluster.outbox.clear()
    # (c) n1 restarts, wins term 3, and gets index 2 (term 1) onto n3: a majority (n1, n2, n3)
    # holds it and has acknowledged it, while its own noop (index 3) reaches only n2.
    n1 = cluster.start("n1")
    n3 = cluster.nodes["n3"]

    def only_index_2(m: object) -> bool:
        if not isinstance(m, AppendEntries) or m.dst == "n2":
            return True
        if m.dst == "n3" and m.prev_index > n3.last_index:
            return True  # will be rejected: that rejection is what makes n1 send index 2
        return m.dst == "n3" and all(e.index <= 2 for e in m.entries)

    for _ in range(5):
        term = n1.term
        while n1.term == term:
            n1.tick()
        cluster.process("n1")
        cluster.deliver(only_index_2)
        if n1.role is Role.LEADER:
            break
    assert n1.role is Role.LEADER
    assert n1.term == 3
    assert [cluster.nodes[i].log.term_at(2) for i in ("n1", "n2", "n3")] == [1, 1, 1]
    committed_by_n1 = list(cluster.machines["n1"].commands)
    assert n1.commit_index == 1, "Figure 8: index 2 is from term 1 and must not commit in term 3"
    cluster.crash("n1")
    cluster.outbox.clear()
    # (d) n5 restarts and (its last log term 2 beats term 1) wins, overwriting index 2.
    n5 = cluster.start("n5")
    for _ in range(5):
        if n5.role is Role.LEADER:
            break
        cluster.elect("n5")
    assert n5.role is Role.LEADER
    cluster.tick_all(3)
    final = cluster.machines["n5"].commands
    assert final[: len(committed_by_n1)] == committed_by_n1, "a committed entry was overwritten"
    assert cluster.nodes["n2"].log.term_at(2) == 2
