"""RaftConfig refuses settings that cannot work, with a message naming the field."""

from __future__ import annotations

import pytest

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.errors import RaftConfigError

VOTERS = ("n1", "n2", "n3")


def test_defaults_give_a_50ms_heartbeat_and_a_300_to_600ms_election_timeout() -> None:
    config = RaftConfig("n1", VOTERS)
    assert (config.heartbeat_ticks, config.election_ticks_min, config.election_ticks_max) == (
        1,
        6,
        12,
    )
    assert config.pre_vote
    assert config.check_quorum
    assert not config.lease_reads
    assert config.quorum == 2
    five = ["n1", "n2", "n3", "n4", "n5"]
    assert RaftConfig("n1", five).voters == (*VOTERS, "n4", "n5")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_id": "n9"}, "not among the voters"),
        ({"voters": ("n1", "n1")}, "duplicates"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks"),
        ({"election_ticks_min": 1}, "must exceed heartbeat_ticks"),
        ({"election_ticks_max": 6}, "randomised"),
        ({"max_entries_per_append": 0}, "max_entries_per_append"),
        ({"max_entries_per_append": 10**6}, "MAX_ENTRIES_PER_MESSAGE"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"lease_reads": True, "check_quorum": False}, "needs check_quorum"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_with_its_name(
    kwargs: dict[str, object], message: str
) -> None:
    settings: dict[str, object] = {"node_id": "n1", "voters": VOTERS, **kwargs}
    with pytest.raises(RaftConfigError, match=message):
        RaftConfig(**settings)  # type: ignore[arg-type]
