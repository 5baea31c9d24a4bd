"""A bad nemesis list is refused before anything starts, with a message naming entry and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nemesis_probe_backend import ProbeBackend

from bench.backends.reference import ReferenceBackend
from bench.cluster import ClusterHandle, Inventory, NodeSpec, open_cluster
from lockbench.errors import ConfigError
from lockbench.protocols import ClusterFacts
from nemesis.schedule import NemesisRunner
from nemesis.spec import (
    ClockOptions,
    ExplicitSchedule,
    IntervalSchedule,
    NetemOptions,
    PartitionOptions,
    PowerLossOptions,
    RandomSchedule,
    TargetSpec,
    parse_specs,
)

NAMES = ("n1", "n2", "n3", "n4", "n5")


def _cluster(tmp_path: Path, runtime: str, *, port_step: int = 100) -> ClusterHandle:
    """A real cluster handle; SSH connects lazily, so nothing is contacted by validation.

    Local nodes whose port offsets are too close together leave no room for the link proxy, so
    that cluster cannot partition (bench.cluster.link_faults).
    """
    shared = runtime == "local"
    nodes = tuple(
        NodeSpec(
            name=name,
            address="127.0.0.1" if shared else f"10.77.2.{11 + i}",
            data_dir=str(tmp_path / name),
            port_offset=port_step * i if shared else 0,
        )
        for i, name in enumerate(NAMES)
    )
    return open_cluster(Inventory(runtime, nodes, tmp_path, None))


def _runner(
    tmp_path: Path, specs: list[dict[str, Any]], runtime: str = "netns", port_step: int = 100
) -> NemesisRunner:
    return NemesisRunner(
        specs,
        _cluster(tmp_path, runtime, port_step=port_step),
        ReferenceBackend(),
        seed=1,
        record=lambda *_: None,
    )


def _refused(
    tmp_path: Path, spec: dict[str, Any], runtime: str = "netns", port_step: int = 100
) -> str:
    with pytest.raises(ConfigError) as info:
        _runner(tmp_path, [spec], runtime, port_step).validate()
    return str(info.value)


def test_unknown_nemesis_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"fault": "meteor"})
    assert "nemesis[0]" in message
    assert "'meteor'" in message
    assert "partition" in message


def test_a_minority_of_three_out_of_five_is_impossible(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"fault": "kill", "target": "minority", "count": 3})
    assert "minority of 3 out of 5" in message
    message = _refused(
        tmp_path, {"fault": "partition", "shape": "majority-minority", "minority_size": 3}
    )
    assert "minority of 3 out of 5" in message


def test_a_majority_of_two_out_of_five_is_impossible(tmp_path: Path) -> None:
    assert "majority of 2 out of 5" in _refused(
        tmp_path, {"fault": "pause", "target": "majority", "count": 2}
    )


def test_a_fault_the_runtime_cannot_do_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"fault": "partition"}, runtime="local", port_step=1)
    assert "local runtime cannot inject partition" in message
    assert "local runtime cannot inject netem" in _refused(
        tmp_path, {"fault": "netem", "delay_ms": 10}, runtime="local", port_step=1
    )


def test_the_local_link_proxy_is_refused_what_it_cannot_shape(tmp_path: Path) -> None:
    _runner(
        tmp_path, [{"fault": "partition"}, {"fault": "netem", "delay_ms": 5}], "local"
    ).validate()
    for spec in (
        {"fault": "netem", "delay_ms": 5, "reorder": 0.1},
        {"fault": "netem", "duplicate": 0.5},
        {"fault": "netem", "loss": 1.0},
    ):
        assert "link proxy can delay, jitter and lose" in _refused(tmp_path, spec, "local")


def test_clock_offset_out_of_range_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"fault": "clock", "mode": "bump", "offset_ms": 7_200_000})
    assert "offset_ms" in message
    assert "out of range" in message


def test_strobe_faster_than_the_clock_library_rereads_is_refused(tmp_path: Path) -> None:
    message = _refused(
        tmp_path, {"fault": "clock", "mode": "strobe", "offset_ms": 200, "period_ms": 50}
    )
    assert "period_ms" in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"fault": "kill", "target": ["n9"]}, "unknown node"),
        ({"fault": "kill", "targt": "leader"}, "unknown key(s) targt"),
        ({"fault": "kill", "schedule": {"interval": 5, "duration": 5}}, "shorter than interval"),
        ({"fault": "kill", "schedule": {"at": [[5, 3]]}}, "start < stop"),
        ({"fault": "kill", "schedule": {"at": [[1, 5], [3, 8]]}}, "not overlap"),
        ({"fault": "kill", "schedule": {"interval": 5, "at": [[1, 2]]}}, "exactly one"),
        ({"fault": "partition", "shape": "triangle"}, "unknown partition shape"),
        ({"fault": "partition", "shape": "grudge", "grudge": {"n1": ["n1"]}}, "node itself"),
        ({"fault": "partition", "shape": "grudge", "grudge": {"n1": ["x"]}}, "unknown node"),
        ({"fault": "netem"}, "delay_ms, loss and/or duplicate"),
        ({"fault": "netem", "delay_ms": 10, "jitter_ms": 20}, "jitter_ms"),
        ({"fault": "netem", "loss": 1.5}, "probability"),
        ({"fault": "netem", "delay_ms": 5, "links": [["n1", "n7"]]}, "unknown node"),
        ({"fault": "clock", "mode": "drift", "rate": 3}, "drift rate"),
        ({"fault": "clock", "mode": "bump"}, "non-zero offset_ms"),
        ({"fault": "power-loss", "offset_ms": 5}, "unknown key(s) offset_ms"),
        ({"fault": "power-loss", "target": "minority", "count": 3}, "minority of 3 out of 5"),
        ({"fault": "power-loss", "target": ["n6"]}, "unknown node"),
    ],
)
def test_malformed_entries_are_refused_with_the_reason(
    tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    assert expected in _refused(tmp_path, spec)


def test_partitions_need_distinct_node_addresses(tmp_path: Path) -> None:
    runner = NemesisRunner(
        [{"fault": "partition"}],
        _cluster(tmp_path, "local"),
        ReferenceBackend(),
        seed=1,
        record=lambda *_: None,
    )
    runner.cluster = _SharedAddressCluster(runner.cluster)
    with pytest.raises(ConfigError, match=r"share address 127\.0\.0\.1"):
        runner.validate()


class _SharedAddressCluster:
    """The local runtime's nodes, claimed partitionable: validation must still refuse."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.runtime = inner.runtime
        self.nodes = inner.nodes
        self.capabilities = frozenset({"partition"})

    def node(self, name: str) -> Any:
        return self.inner.node(name)


def test_a_well_formed_list_parses_into_typed_entries(tmp_path: Path) -> None:
    runner = _runner(
        tmp_path,
        [
            {"fault": "partition", "shape": "majorities-ring"},
            {"fault": "kill", "target": "leader", "schedule": {"at": [[1, 2], [4, 6]]}},
            {"fault": "pause", "target": "minority", "schedule": {"interval": 8, "duration": 2}},
            {"fault": "clock", "mode": "bump", "offset_ms": -250, "target": ["n2"]},
            {
                "fault": "netem",
                "delay_ms": 50,
                "jitter_ms": 10,
                "loss": 0.05,
                "schedule": {"random": {"gap": [1, 3], "duration": [2, 4]}},
            },
        ],
    )
    runner.validate()
    assert runner.specs is not None
    partition, kill, pause, clock, netem = runner.specs
    assert isinstance(partition.options, PartitionOptions)
    assert partition.options.shape == "majorities-ring"
    assert partition.schedule == IntervalSchedule(10.0, 5.0)
    assert kill.schedule == ExplicitSchedule(((1.0, 2.0), (4.0, 6.0)))
    assert pause.options == type(pause.options)(TargetSpec("minority"))
    assert clock.options == ClockOptions(
        mode="bump", target=TargetSpec("nodes", None, ("n2",)), offset_ms=-250.0
    )
    assert netem.options == NetemOptions(
        target=TargetSpec("all"), delay_ms=50.0, jitter_ms=10.0, loss=0.05
    )
    assert netem.schedule == RandomSchedule((1.0, 3.0), (2.0, 4.0))


def test_a_power_loss_entry_parses_with_its_target(tmp_path: Path) -> None:
    runner = _runner(tmp_path, [{"fault": "power-loss", "target": "majority", "count": 4}])
    runner.validate()
    assert runner.specs is not None
    assert runner.specs[0].options == PowerLossOptions(TargetSpec("majority", 4))
    # validating mounts nothing: the filesystem is mounted by prepare_nodes, after deploying
    assert runner.power_mounts is not None
    assert runner.power_mounts.mounted == set()


def test_power_loss_is_refused_for_a_backend_without_a_state_dir(tmp_path: Path) -> None:
    runner = NemesisRunner(
        [{"fault": "power-loss"}],
        _cluster(tmp_path, "netns"),
        ProbeBackend(),
        seed=1,
        record=lambda *_: None,
    )
    with pytest.raises(ConfigError) as info:
        runner.validate()
    message = str(info.value)
    assert "nemesis[0] (power-loss)" in message
    assert "'probe'" in message
    assert "state_dir" in message


def test_power_loss_is_refused_where_the_filesystem_cannot_be_mounted() -> None:
    facts = ClusterFacts("local", NAMES, dict.fromkeys(NAMES, "127.0.0.1"), frozenset({"kill"}))
    with pytest.raises(ConfigError, match=r"cannot inject power-loss faults .*run as root"):
        parse_specs([{"fault": "power-loss"}], facts)


def test_without_a_power_loss_entry_nothing_is_mounted(tmp_path: Path) -> None:
    runner = _runner(tmp_path, [{"fault": "kill"}])
    runner.prepare_nodes()  # would mount the filesystem if a fault needed it; none does
    assert runner.power_mounts is None
    assert runner.release_nodes() == []
