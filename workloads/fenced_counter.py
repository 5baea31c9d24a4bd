"""``fenced-counter``: under the lock, read the resource's counter, add one, write it back.

A cycle: acquire, res-enter, res-read, res-write (read + 1), res-exit, release; a refused access
skips the rest of the critical section.
Every access carries the fencing token. After the test (faults healed) a final read gives the
counter's value; the lost-updates checker compares it with the acknowledged increments: each must
be there exactly once (unknown ones may or may not be).
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
class FencedCounterOptions:
    """``workload_options`` of ``fenced-counter``."""

    counters: int = 1
    acquire_timeout: float = 2.0
    think: float = 0.02
    key_prefix: str = "counter/"

    def __post_init__(self) -> None:
        require(self.counters >= 1, "counters", "must be at least 1")
        require(self.acquire_timeout > 0, "acquire_timeout", "must be positive")
        require(self.think >= 0, "think", "must not be negative")


class FencedCounterWorkload(BenchWorkload):
    name = "fenced-counter"
    options_class = FencedCounterOptions
    default_checkers = ("mutual-exclusion", "fencing", "lost-updates", "availability")
    uses_resource = True

    def __init__(self, options: FencedCounterOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        self.options = options

    def counter_names(self) -> list[str]:
        return [f"{self.options.key_prefix}{i}" for i in range(self.options.counters)]

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        lock = rng.choice(self.counter_names())
        delay = jittered(rng, self.options.think)
        return [Step(acquire_op(lock, self.options.acquire_timeout), delay)]

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        assert op.key is not None
        if op.f == "acquire" and outcome == "ok":
            plan.append(Step(Invocation("res-enter", op.key, {"token": value})))
        elif op.f == "res-enter":
            if outcome == "ok":
                plan.append(Step(Invocation("res-read", op.key, {"token": op.value["token"]})))
            else:
                plan.append(Step(release_op(op.key)))
        elif op.f == "res-read":
            token = op.value["token"]
            if outcome == "ok":
                current = value.get("value") or 0
                write = {"token": token, "value": current + 1}
                plan.append(Step(Invocation("res-write", op.key, write)))
            plan.append(Step(Invocation("res-exit", op.key, {"token": token})))
            plan.append(Step(release_op(op.key)))

    def final_ops(self) -> Sequence[Invocation]:
        return [Invocation("final-read", name, None) for name in self.counter_names()]
