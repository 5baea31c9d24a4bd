"""Schedules are seeded: the same seed replays the same fault windows and target choices."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lockbench.errors import ConfigError
from lockbench.protocols import ClusterFacts
from nemesis.fault import entry_rng
from nemesis.schedule import fault_windows, plan
from nemesis.spec import (
    ExplicitSchedule,
    IntervalSchedule,
    RandomSchedule,
    TargetSpec,
    parse_specs,
)
from nemesis.targets import resolve_target

FACTS = ClusterFacts(
    runtime="netns",
    node_names=("n1", "n2", "n3", "n4", "n5"),
    addresses={f"n{i}": f"10.77.2.{10 + i}" for i in range(1, 6)},
    capabilities=frozenset({"partition", "kill", "pause", "clock", "netem"}),
)


def _take(iterator: object, count: int) -> list[tuple[float, float]]:
    out = []
    for window in iterator:  # type: ignore[attr-defined]
        out.append(window)
        if len(out) == count:
            break
    return out


def test_interval_schedule_is_quiet_then_faulty_each_cycle() -> None:
    windows = _take(fault_windows(IntervalSchedule(10, 4), random.Random(0)), 3)
    assert windows == [(6.0, 10.0), (16.0, 20.0), (26.0, 30.0)]


def test_explicit_schedule_is_exactly_the_listed_windows() -> None:
    schedule = ExplicitSchedule(((1.0, 2.0), (5.0, 9.0)))
    assert list(fault_windows(schedule, random.Random(0))) == [(1.0, 2.0), (5.0, 9.0)]


def test_random_schedule_stays_within_its_ranges_and_never_overlaps() -> None:
    windows = _take(fault_windows(RandomSchedule((1, 3), (2, 4)), random.Random(7)), 50)
    previous_stop = 0.0
    for start, stop in windows:
        assert 1 <= start - previous_stop <= 3
        assert 2 <= stop - start <= 4
        previous_stop = stop


def test_same_seed_replays_the_same_plan_and_another_seed_does_not() -> None:
    specs = parse_specs(
        [
            {"fault": "partition", "schedule": {"random": {"gap": [1, 5], "duration": [1, 5]}}},
            {"fault": "kill", "schedule": {"random": {"gap": [1, 5], "duration": [1, 5]}}},
            {"fault": "clock", "offset_ms": 100, "schedule": {"interval": 7, "duration": 3}},
        ],
        FACTS,
    )
    first = plan(specs, seed=11, horizon=120)
    assert first == plan(specs, seed=11, horizon=120)
    assert first != plan(specs, seed=12, horizon=120)
    assert {w.fault for w in first} == {"partition", "kill", "clock"}
    assert [w.start for w in first] == sorted(w.start for w in first)


def test_targets_resolve_to_the_right_sizes_and_replay_with_the_seed() -> None:
    names = list(FACTS.node_names)

    def choose(target: TargetSpec, seed: int) -> tuple[str, ...]:
        return resolve_target(target, names, entry_rng(seed, 0, "targets"), lambda: "n3")

    assert len(choose(TargetSpec("minority"), 1)) == 2
    assert len(choose(TargetSpec("majority"), 1)) == 3
    assert len(choose(TargetSpec("random", 4), 1)) == 4
    assert choose(TargetSpec("all"), 1) == tuple(names)
    assert choose(TargetSpec("leader"), 1) == ("n3",)
    assert choose(TargetSpec("nodes", None, ("n5",)), 1) == ("n5",)
    picks = [choose(TargetSpec("minority"), seed) for seed in range(20)]
    assert picks == [choose(TargetSpec("minority"), seed) for seed in range(20)]
    assert len(set(picks)) > 1


def test_an_unknown_leader_means_no_target() -> None:
    rng = random.Random(0)
    assert resolve_target(TargetSpec("leader"), ["n1", "n2"], rng, lambda: None) == ()


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 10)
    | st.floats(allow_nan=True)
    | st.sampled_from(["n1", "n9", "leader", "minority", "all", "bump", "grudge", "halves"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
_keys = st.sampled_from(
    [
        "fault",
        "schedule",
        "target",
        "count",
        "shape",
        "grudge",
        "mode",
        "offset_ms",
        "period_ms",
        "rate",
        "delay_ms",
        "jitter_ms",
        "loss",
        "links",
        "minority_size",
        "interval",
        "at",
        "x",
    ]
)
_entries = st.dictionaries(_keys, _values, max_size=5).map(
    lambda d: d if "fault" in d else {"fault": "partition", **d}
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_entries | _values, max_size=3) | _values)
def test_any_malformed_list_is_refused_with_a_config_error_and_nothing_else(raw: list[Any]) -> None:
    try:
        parse_specs(raw, FACTS)
    except ConfigError as exc:  # refusing is optional here: some generated lists are valid
        assert str(exc).startswith("nemesis")  # noqa: PT017
