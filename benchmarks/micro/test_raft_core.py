"""The sans-I/O Raft core alone: one proposal round (propose, the leader's Ready, replication,
commit) through an in-memory group, no disk and no sockets."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.drivers.raft_group import InstantGroup


@pytest.mark.parametrize(("nodes", "batch"), [(3, 1), (3, 16), (5, 1), (5, 16)])
def test_proposal_round(benchmark: BenchmarkFixture, nodes: int, batch: int) -> None:
    group = InstantGroup(nodes)
    leader = group.elect("n1")
    payloads = [b"lock-acquire:key-%d:client-1" % i for i in range(batch)]

    def one_round() -> int:
        for payload in payloads:
            leader.propose(payload)
        group.process("n1")
        group.deliver()
        return leader.commit_index

    before = leader.commit_index
    committed = benchmark(one_round)
    assert committed - before >= batch  # every round committed its proposals
