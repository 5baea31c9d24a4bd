"""What every fault family shares: the resolved target of one start, the heal error, and the
seeded RNG of an entry."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FaultTarget:
    """Whom one start of a fault hits, decided by the runner (seeded) just before it starts.

    ``grudge`` is for partitions (node -> nodes it cannot hear); ``hold_seconds`` bounds helpers
    that run on the node (clock driver, shaper) so they end even if the bench dies.
    """

    nodes: tuple[str, ...] = ()
    grudge: Mapping[str, frozenset[str]] = field(default_factory=dict)
    hold_seconds: float = 60.0


class HealError(RuntimeError):
    """A heal that left something behind; ``errors`` names each node and what is left."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def entry_rng(seed: int, index: int, purpose: str) -> random.Random:
    """A string seed is hashed with SHA-512 by ``random``: stable across runs and platforms."""
    return random.Random(f"lockbench:{seed}:{index}:{purpose}")
