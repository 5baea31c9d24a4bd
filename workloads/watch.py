"""``watch``: watchers record the event streams while the other processes lock and unlock.

The first ``watchers`` process slots watch the lock prefix in windows of ``duration`` seconds,
each window resuming right after the last revision the slot has seen (so the recorded streams can
be checked for lost, duplicated or reordered events). Until a slot has seen its first event, each
window starts at "now". The other slots acquire, hold and release locks under the prefix.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lockbench.history import OpType
from lockbench.options import OptionError, require
from lockbench.protocols import Invocation
from workloads.base import BenchWorkload, Step, WorkloadContext, acquire_op, release_op
from workloads.mutex import jittered


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """``workload_options`` of ``watch``."""

    watchers: int = 2
    duration: float = 2.0
    locks: int = 2
    acquire_timeout: float = 1.0
    hold: float = 0.05
    think: float = 0.05
    prefix: str = "watch/"

    def __post_init__(self) -> None:
        require(self.watchers >= 1, "watchers", "must be at least 1")
        require(self.duration > 0, "duration", "must be positive")
        require(self.locks >= 1, "locks", "must be at least 1")
        require(self.acquire_timeout > 0, "acquire_timeout", "must be positive")


class WatchWorkload(BenchWorkload):
    name = "watch"
    options_class = WatchOptions
    default_checkers = ("watches", "mutual-exclusion", "availability")

    def __init__(self, options: WatchOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        if options.watchers >= context.concurrency:
            raise OptionError(
                "watchers",
                f"must be less than concurrency ({context.concurrency}) so some processes lock",
            )
        self.options = options
        self._last_revision: dict[int, int] = {}  # per slot

    def is_watcher(self, process: int) -> bool:
        return process % self.context.concurrency < self.options.watchers

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        if self.is_watcher(process):
            slot = process % self.context.concurrency
            last = self._last_revision.get(slot, 0)
            value = {
                "prefix": self.options.prefix,
                "from_revision": last + 1 if last else 0,
                "duration": self.options.duration,
            }
            return [Step(Invocation("watch", self.options.prefix, value))]
        lock = f"{self.options.prefix}{rng.randrange(self.options.locks)}"
        delay = jittered(rng, self.options.think)
        return [Step(acquire_op(lock, self.options.acquire_timeout), delay)]

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        if op.f == "watch" and outcome == "ok" and value:
            slot = process % self.context.concurrency
            self._last_revision[slot] = max(e["revision"] for e in value)
        elif op.f == "acquire" and outcome == "ok":
            assert op.key is not None
            plan.append(Step(release_op(op.key), jittered(self.rng(process), self.options.hold)))
