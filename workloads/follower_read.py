"""``follower-read``: clients read lock owners from every node, including followers.

Odd process slots read the owner of a lock from each node in turn (the op names the node); even
slots acquire, hold and release the locks. A linearizable service answers the same from a
follower as from the leader; a stale follower read shows up as an owner read the lock model
cannot place.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lockbench.history import OpType
from lockbench.options import require
from lockbench.protocols import Invocation
from workloads.base import BenchWorkload, Step, WorkloadContext, acquire_op, release_op
from workloads.mutex import jittered


@dataclass(frozen=True, slots=True)
class FollowerReadOptions:
    """``workload_options`` of ``follower-read``."""

    locks: int = 2
    acquire_timeout: float = 1.0
    hold: float = 0.1
    think: float = 0.05
    key_prefix: str = "fr/"

    def __post_init__(self) -> None:
        require(self.locks >= 1, "locks", "must be at least 1")
        require(self.acquire_timeout > 0, "acquire_timeout", "must be positive")


class FollowerReadWorkload(BenchWorkload):
    name = "follower-read"
    options_class = FollowerReadOptions
    default_checkers = ("linearizable", "mutual-exclusion", "availability")

    def __init__(self, options: FollowerReadOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        self.options = options
        self._reads: dict[int, int] = {}

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        lock = f"{self.options.key_prefix}{rng.randrange(self.options.locks)}"
        delay = jittered(rng, self.options.think)
        if process % 2 == 1:
            nodes = self.context.nodes
            count = self._reads.get(process, 0)
            self._reads[process] = count + 1
            value = {"node": nodes[(process + count) % len(nodes)]} if nodes else None
            return [Step(Invocation("owner", lock, value), delay)]
        return [Step(acquire_op(lock, self.options.acquire_timeout), delay)]

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        if op.f == "acquire" and outcome == "ok":
            assert op.key is not None
            plan.append(Step(release_op(op.key), jittered(self.rng(process), self.options.hold)))
