"""Choosing the nodes a fault hits: seeded, so the same seed and answers replay the same choice."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from nemesis.spec import TargetSpec


def resolve_target(
    target: TargetSpec,
    node_names: Sequence[str],
    rng: random.Random,
    leader: Callable[[], str | None],
) -> tuple[str, ...]:
    """The nodes to hit now; empty when the target is the leader and none is known.

    ``node_names`` is sorted first so that only the seed decides, not the inventory's order.
    """
    names = sorted(node_names)
    n = len(names)
    if target.kind == "nodes":
        return target.nodes
    if target.kind == "all":
        return tuple(names)
    if target.kind == "leader":
        current = leader()
        return (current,) if current in names else ()
    default_count = {"random": 1, "minority": (n - 1) // 2, "majority": n // 2 + 1}[target.kind]
    count = target.count if target.count is not None else default_count
    return tuple(sorted(rng.sample(names, count)))
