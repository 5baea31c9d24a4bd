"""``lease-expiry``: a holder stalls past its TTL (a simulated GC pause), then writes anyway.

While the holder's keepalives are suspended its session expires and the lock goes to the next
process, with a higher token. When the stalled holder wakes up it writes to the resource with its
old token, as a real paused process would: in ``fenced`` mode that write must be refused; in
``unfenced`` mode it lands, and the checkers show the overlap. The holder does record that its
lease may have lapsed (``lease-lost``) before it goes on: the history says what it knew.
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
class LeaseExpiryOptions:
    """``workload_options`` of ``lease-expiry``."""

    locks: int = 1
    acquire_timeout: float = 5.0
    stall_probability: float = 0.3
    stall_ttl_factor: float = 1.5
    think: float = 0.05
    key_prefix: str = "lease/"

    def __post_init__(self) -> None:
        require(self.locks >= 1, "locks", "must be at least 1")
        require(self.acquire_timeout > 0, "acquire_timeout", "must be positive")
        require(0 <= self.stall_probability <= 1, "stall_probability", "must be within [0, 1]")
        require(
            self.stall_ttl_factor > 1,
            "stall_ttl_factor",
            "must exceed 1 (the stall has to outlast the TTL)",
        )
        require(self.think >= 0, "think", "must not be negative")


class LeaseExpiryWorkload(BenchWorkload):
    name = "lease-expiry"
    options_class = LeaseExpiryOptions
    default_checkers = ("mutual-exclusion", "fencing", "liveness")
    uses_resource = True
    # The stalled holder records lease-lost when it wakes, then writes anyway: the test of fencing.
    stale_holder_keeps_going = True

    def __init__(self, options: LeaseExpiryOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        self.options = options
        self._writes = 0

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        lock = f"{self.options.key_prefix}{rng.randrange(self.options.locks)}"
        delay = jittered(rng, self.options.think)
        return [Step(acquire_op(lock, self.options.acquire_timeout), delay)]

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        assert op.key is not None
        if op.f != "acquire" or outcome != "ok":
            return  # a refused access keeps the plan: the stale holder tries to finish as it would
        self._writes += 1
        written = f"{process}:{self._writes}"
        plan.append(Step(Invocation("res-enter", op.key, {"token": value})))
        if self.rng(process).random() < self.options.stall_probability:
            seconds = round(self.context.ttl * self.options.stall_ttl_factor, 3)
            plan.append(Step(Invocation("stall", op.key, {"seconds": seconds})))
        plan.append(Step(Invocation("res-write", op.key, {"token": value, "value": written})))
        plan.append(Step(Invocation("res-exit", op.key, {"token": value})))
        plan.append(Step(release_op(op.key)))
