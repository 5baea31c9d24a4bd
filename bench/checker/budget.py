"""Time and memory limits for a check, so a hard history ends in ``unknown`` instead of a hang."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# How often (in search steps) the engine looks at the clock and the process size. Reading
# /proc/self/statm costs about a microsecond; every 4096 steps keeps the overhead below 1%.
CHECK_EVERY_STEPS = 4096
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class BudgetExceeded(Exception):
    """The check ran out of time or memory; ``reason`` says which and how far it got."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resident_bytes() -> int:
    """The process's resident set size now (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            fields = fh.read().split()
        return int(fields[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(slots=True)
class Budget:
    """A deadline on the monotonic clock and a ceiling on the resident set size.

    The memory ceiling applies to the whole process (that is what runs out), measured against the
    size when the budget was made, so a large history already in memory is not counted twice.
    """

    deadline: float
    memory_limit_bytes: int
    baseline_bytes: int
    time_budget_s: float

    @classmethod
    def start(cls, time_budget_s: float, memory_budget_mb: float) -> Budget:
        return cls(
            deadline=time.monotonic() + time_budget_s,
            memory_limit_bytes=int(memory_budget_mb * 1024 * 1024),
            baseline_bytes=resident_bytes(),
            time_budget_s=time_budget_s,
        )

    def check(self, what: str) -> None:
        """Raise BudgetExceeded if the deadline passed or the search grew past the ceiling."""
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"time budget of {self.time_budget_s:g} s exhausted while {what}; "
                "raise time_budget_s or check a shorter history"
            )
        grown = resident_bytes() - self.baseline_bytes
        if grown > self.memory_limit_bytes:
            raise BudgetExceeded(
                f"memory budget of {self.memory_limit_bytes // (1024 * 1024)} MiB exhausted "
                f"while {what}; raise memory_budget_mb or check a shorter history"
            )

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
