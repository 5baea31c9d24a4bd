"""lockbench_example: a plug-in package that extends lockbench without touching it.

Its pyproject.toml declares a backend, a workload, a checker and a report panel as entry points;
once it is installed a test file names them like built-ins (``backend: example-memory``,
``workload: lock-cycle``, ``checkers: [released-what-it-held]``) and every report shows the
panel. It imports lockbench's contract (``lockbench.*``) and, to stay short, reuses two built-in
plug-ins as base classes.
"""

from __future__ import annotations

import html
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.backends.memory import MemoryBackend
from lockbench.history import OpType, PairedHistory, Process
from lockbench.options import CheckOptions, require
from lockbench.protocols import Anomaly, CheckResult, Invocation, RunView
from workloads.base import BenchWorkload, Step, WorkloadContext, acquire_op, release_op


class ExampleBackend(MemoryBackend):
    """The in-process memory lock service under a name of its own (a real plug-in would deploy
    its service to the nodes in ``deploy`` and start it in ``start``)."""

    name = "example-memory"


@dataclass(frozen=True, slots=True)
class LockCycleOptions:
    """``workload_options`` of ``lock-cycle``, checked by lockbench's option parser."""

    locks: int = 2
    hold: float = 0.01
    acquire_timeout: float = 1.0

    def __post_init__(self) -> None:
        require(self.locks >= 1, "locks", "must be at least 1")
        require(self.hold >= 0, "hold", "must not be negative")


class LockCycleWorkload(BenchWorkload):
    """Each cycle: acquire one of a few locks, hold it a moment, release it."""

    name = "lock-cycle"
    options_class = LockCycleOptions
    default_checkers = ("mutual-exclusion", "released-what-it-held")

    def __init__(self, options: LockCycleOptions, context: WorkloadContext) -> None:
        super().__init__(context)
        self.options = options

    def begin_cycle(self, process: int, rng: random.Random) -> Sequence[Step]:
        lock = f"cycle/{rng.randrange(self.options.locks)}"
        return [Step(acquire_op(lock, self.options.acquire_timeout))]

    def on_complete(
        self, process: int, op: Invocation, outcome: OpType, value: Any, plan: deque[Step]
    ) -> None:
        if op.f == "acquire" and outcome == "ok" and op.key is not None:
            plan.append(Step(release_op(op.key), self.options.hold))


class ReleasedWhatItHeld:
    """``released-what-it-held``: a release the service acknowledged must be of a lock the
    process held (its last acquire of that lock succeeded, or may have: info)."""

    name = "released-what-it-held"

    def check(self, history: PairedHistory, options: CheckOptions) -> CheckResult:
        held: set[tuple[Process, str | None]] = set()
        anomalies: list[Anomaly] = []
        releases = 0
        for call in history.calls:
            holder = (call.process, call.invoke.key)
            if call.invoke.f == "acquire" and call.outcome != "fail":
                held.add(holder)
            elif call.invoke.f == "release" and call.outcome == "ok":
                releases += 1
                if holder not in held:
                    anomalies.append(
                        Anomaly(
                            "release-without-hold",
                            f"process {call.process} released {call.invoke.key} without holding it",
                            (call.invoke.index,),
                            key=call.invoke.key,
                            processes=(call.process,),
                        )
                    )
                held.discard(holder)
        stats = {"acknowledged_releases": releases, "anomalies": len(anomalies)}
        if anomalies:
            return CheckResult(self.name, "invalid", tuple(anomalies), stats)
        if not releases:
            return CheckResult(self.name, "unknown", stats=stats, reason="no release to check")
        return CheckResult(self.name, "valid", stats=stats)


class GrantsPerProcess:
    """A report panel: how many acquires each client process was granted."""

    name = "grants-per-process"
    title = "Grants per process"

    def render(self, run: RunView) -> str | None:
        grants: dict[str, int] = {}
        for call in run.calls:
            if call.invoke.f == "acquire" and call.outcome == "ok":
                grants[str(call.process)] = grants.get(str(call.process), 0) + 1
        if not grants:
            return None
        rows = "".join(
            f"<tr><td>{html.escape(process)}</td><td>{count}</td></tr>"
            for process, count in sorted(grants.items())
        )
        return f"<table><tr><th>process</th><th>grants</th></tr>{rows}</table>"
