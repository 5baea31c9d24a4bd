"""Partition shapes as grudges: for each node, the set of nodes it cannot hear.

Pure functions of the node names and a seeded RNG (after Jepsen's ``nemesis.combined``), so the
shapes are tested without a network and the same seed cuts the cluster the same way.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

Grudge = Mapping[str, frozenset[str]]


def complete_grudge(components: Sequence[Sequence[str]]) -> dict[str, frozenset[str]]:
    """Every node hears only the nodes of its own component."""
    everyone = {name for component in components for name in component}
    return {
        name: frozenset(everyone - set(component)) for component in components for name in component
    }


def random_halves(names: Sequence[str], rng: random.Random) -> dict[str, frozenset[str]]:
    """Two random halves; with an odd count the second half is the larger one."""
    shuffled = sorted(names)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    return complete_grudge([shuffled[:half], shuffled[half:]])


def majority_minority(
    names: Sequence[str], rng: random.Random, minority_size: int
) -> dict[str, frozenset[str]]:
    """A random minority of ``minority_size`` nodes cut from the majority."""
    shuffled = sorted(names)
    rng.shuffle(shuffled)
    return complete_grudge([shuffled[:minority_size], shuffled[minority_size:]])


def majorities_ring(names: Sequence[str], rng: random.Random) -> dict[str, frozenset[str]]:
    """Every node sees a majority, and no two nodes see the same majority.

    Nodes sit on a shuffled ring; each hears the majority-sized window of ring neighbours centred
    on itself and nothing else. With 5 nodes every node hears its two ring neighbours.
    """
    ring = sorted(names)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    before = majority // 2
    everyone = set(ring)
    grudge: dict[str, frozenset[str]] = {}
    for i, name in enumerate(ring):
        window = {ring[(i - before + k) % n] for k in range(majority)}
        grudge[name] = frozenset(everyone - window)
    return grudge


def bridge(names: Sequence[str], rng: random.Random) -> dict[str, frozenset[str]]:
    """Two halves that cannot hear each other, joined through one node that hears everyone."""
    shuffled = sorted(names)
    rng.shuffle(shuffled)
    middle = len(shuffled) // 2
    left, hub, right = shuffled[:middle], shuffled[middle], shuffled[middle + 1 :]
    grudge: dict[str, frozenset[str]] = {hub: frozenset()}
    grudge.update({name: frozenset(right) for name in left})
    grudge.update({name: frozenset(left) for name in right})
    return grudge


def isolate(names: Sequence[str], victim: str) -> dict[str, frozenset[str]]:
    """One node cut from all the others."""
    return complete_grudge([[victim], [n for n in sorted(names) if n != victim]])


def explicit(pairs: Sequence[tuple[str, Sequence[str]]]) -> dict[str, frozenset[str]]:
    """A grudge written in the test file: ``{n1: [n2, n3]}`` means n1 cannot hear n2 and n3."""
    return {victim: frozenset(sources) for victim, sources in pairs}


def reachable(grudge: Grudge, source: str, destination: str) -> bool:
    """Whether a TCP exchange between two nodes works: both must hear each other."""
    return destination not in grudge.get(source, frozenset()) and source not in grudge.get(
        destination, frozenset()
    )
