"""The leader observer: polls the backend for the leader and records each change.

Records are ``{"process": "nemesis", "type": "info", "f": "leader", "value": {"leader": n,
"term": t}}`` (docs/history.md); the report draws cluster roles over time from them and the
availability checker measures failovers. Only changes are recorded, so a quiet run adds a line
or two, not one per poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bench.runner.process import HistorySink, RunStats
from lockbench.history import NEMESIS
from lockbench.protocols import Backend, Cluster

log = logging.getLogger(__name__)

_UNSET: Any = object()


def leader_and_term(backend: Backend, cluster: Cluster) -> tuple[str | None, Any]:
    """The leader and its term: ``leader_status()`` where a backend has it (the reference
    backend does), else ``leader()`` and whatever ``last_term`` it keeps (None if nothing)."""
    status = getattr(backend, "leader_status", None)
    if callable(status):
        leader, term = status(cluster)
        return leader, term
    return backend.leader(cluster), getattr(backend, "last_term", None)


async def observe_leader(
    backend: Backend,
    cluster: Cluster,
    history: HistorySink,
    stats: RunStats,
    stop: asyncio.Event,
    *,
    interval: float,
    timeout: float,
) -> None:
    """Poll ``backend.leader`` (in a thread: it may block on the network) until ``stop``."""
    last: Any = _UNSET
    failures = 0
    while not stop.is_set():
        term: Any = None
        try:
            async with asyncio.timeout(timeout):
                leader, term = await asyncio.to_thread(leader_and_term, backend, cluster)
        except Exception as exc:
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("leader observer: %s (failure %d)", exc, failures)
            leader = None
        if leader != last:
            history.append(
                NEMESIS,
                "info",
                "leader",
                None,
                {"leader": leader, "term": term if isinstance(term, int) else None},
            )
            stats.leader = leader
            last = leader
        try:
            async with asyncio.timeout(interval):
                await stop.wait()
        except TimeoutError:
            pass


async def wait_for_leader(backend: Backend, cluster: Cluster, *, bound: float) -> str | None:
    """After healing: wait up to ``bound`` seconds for a leader (None if none appeared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while True:
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                leader = await asyncio.to_thread(backend.leader, cluster)
        except Exception:
            leader = None
        if leader is not None or loop.time() >= deadline:
            return leader
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
