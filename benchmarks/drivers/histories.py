"""Lock histories built directly as records, for timing the checkers on a known-valid input.

Processes take turns on a few locks, one op at a time, so the history is valid by construction
and the checkers' time is all search; lease-lost records make some releases indeterminate.
"""

from __future__ import annotations

from bench.runner.process import LEASE_LOST
from lockbench.history import Op, OpType


def lock_history(cycles: int, processes: int, locks: int, lost_every: int) -> list[Op]:
    """Each cycle: a process acquires a lock, and releases it (or records lease-lost first and
    its release is unknown, and a fresh process takes its place)."""
    ops: list[Op] = []
    t = 0

    def add(
        process: int, typ: OpType, f: str, key: str, value: object, session: str | None = None
    ) -> None:
        nonlocal t
        t += 1_000_000
        ops.append(Op(len(ops), t, process, typ, f, key, value, session=session))

    ids = list(range(processes))
    for cycle in range(cycles):
        slot = cycle % processes
        p = ids[slot]
        key = f"lock/{cycle % locks}"
        add(p, "invoke", "acquire", key, {"timeout": 1.0})
        add(p, "ok", "acquire", key, cycle + 1, session=f"s{p}")  # the fencing token
        if lost_every and cycle % lost_every == lost_every - 1:
            since = {"since": t + 500_000}
            add(p, "invoke", LEASE_LOST, key, since, session=f"s{p}")
            add(p, "ok", LEASE_LOST, key, since, session=f"s{p}")
            add(p, "invoke", "release", key, None)
            add(p, "info", "release", key, None)
            ids[slot] = p + processes
        else:
            add(p, "invoke", "release", key, None)
            add(p, "ok", "release", key, None)
    return ops
