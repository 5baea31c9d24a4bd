"""``mutex``: processes acquire and release a few locks with think times.

Each cycle: acquire a random lock (a bounded wait in the queue), enter the protected resource with
the fencing token, hold it for a while, leave, release, think. The resource accesses let the
checkers see overlapping critical sections on the resource's own clock, not just on the bench's.
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


@dataclass(frozen=True, slots=True)
class MutexOptions:
    """``workload_options`` of ``mutex``."""

    locks: int = 3
    acquire_timeout: float = 2.0
    hold: float = 0.02
    think: float = 0.02
    shared_fraction: float = 0.0
    use_resource: bool = True
    key_prefix: str = "lock/"

    def __post_init__(self) -> None:
        require(self.locks >= 1, "locks", "must be at least 1")
        require(self.acquire_timeout > 0, "acquire_timeout", "must be positive")
        require(self.hold >= 0, "hold", "must not be negative")
        require(self.think >= 0, "think", "must not be negative")
        require(0 <= self.shared_fraction <= 1, "shared_fraction", "must be within [0, 1]")


def jittered(rng: random.Random, mean: float) -> float:
    """A delay around ``mean`` (uniform in [0.5, 1.5] x mean), so processes do not lock-step."""
    return mean * (0.5 + rng.random()) if mean > 0 else 0.0


class MutexWorkload(BenchWorkload):
    name = "mutex"
    options_class = MutexOptions
    default_checkers = ("linearizable", "mutual-exclusion", "fencing", "liveness", "availability")
    uses_resource = True

    def __init__(self, options: MutexOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        self.options = options
        self._locks = tuple(f"{options.key_prefix}{i}" for i in range(options.locks))

    def lock_names(self) -> tuple[str, ...]:
        return self._locks

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        lock = rng.choice(self.lock_names())
        shared = rng.random() < self.options.shared_fraction
        return [Step(acquire_op(lock, self.options.acquire_timeout, shared), self._think(rng))]

    def _think(self, rng: random.Random) -> float:
        return jittered(rng, self.options.think)

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        if op.f == "acquire" and outcome == "ok":
            assert op.key is not None
            rng = self.rng(process)
            hold = jittered(rng, self.options.hold)
            if self.options.use_resource and self.context.resource is not None:
                plan.append(Step(Invocation("res-enter", op.key, {"token": value})))
                plan.append(Step(Invocation("res-exit", op.key, {"token": value}), hold))
                plan.append(Step(release_op(op.key)))
            else:
                plan.append(Step(release_op(op.key), hold))
        elif op.f == "res-enter" and outcome == "fail":
            # Refused (stale token): do not pretend to be inside; just release.
            while plan and plan[0].op.f == "res-exit":
                plan.popleft()
