"""Partition shapes cut the cluster the way their names promise, for any cluster size and seed."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from nemesis import iptables, shaper, shapes

sizes = st.integers(min_value=3, max_value=9)
seeds = st.integers(min_value=0, max_value=2**32)


def _names(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def _hears(grudge: shapes.Grudge, names: list[str], node: str) -> frozenset[str]:
    return frozenset(names) - grudge.get(node, frozenset())


@given(sizes, seeds)
def test_majorities_ring_gives_every_node_its_own_majority(n: int, seed: int) -> None:
    names = _names(n)
    grudge = shapes.majorities_ring(names, random.Random(seed))
    views = [_hears(grudge, names, name) for name in names]
    assert all(len(view) == n // 2 + 1 for view in views)
    assert all(name in view for name, view in zip(names, views, strict=True))
    assert len(set(views)) == n, "two nodes see the same majority"
    assert all(
        shapes.reachable(grudge, a, b) == shapes.reachable(grudge, b, a)
        for a in names
        for b in names
    )


@given(sizes, seeds)
def test_random_halves_cut_every_link_between_the_halves_only(n: int, seed: int) -> None:
    names = _names(n)
    grudge = shapes.random_halves(names, random.Random(seed))
    sides = {_hears(grudge, names, name) for name in names}
    assert len(sides) == 2
    assert sorted(len(side) for side in sides) == [n // 2, n - n // 2]


@given(sizes, seeds)
def test_bridge_joins_two_deaf_halves_through_one_node(n: int, seed: int) -> None:
    names = _names(n)
    grudge = shapes.bridge(names, random.Random(seed))
    hubs = [name for name in names if not grudge[name]]
    assert len(hubs) == 1
    hub = hubs[0]
    assert all(shapes.reachable(grudge, hub, name) for name in names)
    others = [name for name in names if name != hub]
    left = _hears(grudge, names, others[0]) - {hub}
    right = frozenset(others) - left
    assert left
    assert right
    assert not any(shapes.reachable(grudge, a, b) for a in left for b in right)


def test_majority_minority_and_isolate_make_complete_cuts() -> None:
    names = _names(5)
    grudge = shapes.majority_minority(names, random.Random(3), 2)
    minority = [name for name in names if len(grudge[name]) == 3]
    assert len(minority) == 2
    isolated = shapes.isolate(names, "n4")
    assert isolated["n4"] == frozenset({"n1", "n2", "n3", "n5"})
    assert all(isolated[name] == frozenset({"n4"}) for name in names if name != "n4")


def test_explicit_grudge_is_one_way_but_blocks_tcp_both_ways() -> None:
    grudge = shapes.explicit([("n1", ["n2"])])
    assert grudge == {"n1": frozenset({"n2"})}
    assert not shapes.reachable(grudge, "n2", "n1")
    assert shapes.reachable(grudge, "n2", "n3")


def test_same_seed_same_cut() -> None:
    names = _names(5)
    assert shapes.majorities_ring(names, random.Random(42)) == shapes.majorities_ring(
        list(reversed(names)), random.Random(42)
    )


def test_the_shaper_and_the_queue_rule_agree_on_the_duplicate_mark() -> None:
    """The shaper is shipped as standalone source, so it repeats the constant: keep them equal."""
    assert shaper.DUPLICATE_MARK == iptables.DUPLICATE_MARK
    assert f"! --mark {iptables.DUPLICATE_MARK:#x}" in iptables.queue_to_rule("10.0.0.1", 1, "t")
