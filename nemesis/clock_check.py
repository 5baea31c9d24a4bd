"""Did a clock fault reach the servers? Checked after every clock action, never assumed.

Two ways, best first:

- ``server``: the backend reports the wall clock its running server sees
  (``lockbench.clock_reach.ServerClock``: lockd's ``/status`` ``wall_time``, Redis ``TIME``).
  Minus the control node's clock at the middle of that call (and the node's system offset where
  nodes have their own clocks), it must equal the offset a fresh process under the library reads
  on the node, within half the call's round trip, the system offset's uncertainty and
  ``REACH_SLACK_MS``.
- ``process``: otherwise (or when the server does not answer, e.g. paused) every daemon running
  on the node must have the library mapped (``/proc/<pid>/maps``): a server started without it
  never sees the fault, whatever the offset file says.

On nodes whose own system clock the nemesis steps (VMs, nemesis.system_clock) every process reads
the stepped clock, so there is no library to look for: ``system``: the node's system clock,
measured on the node against its boot-time clock, must show the offset the nemesis set. A node
of such a runtime without a step in force runs on its own real clock: reached.

``reached`` is True, False (recorded as ``not_reached``: the checker then cannot call the run
valid on the strength of that fault) or None (nothing runs on the node to check, e.g. a killed
server; it restarts under the library, and the next check looks at it).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lockbench.clock_preload import NODE_LIBRARY, steps_system_clock
from lockbench.clock_reach import ServerClock
from lockbench.protocols import Backend, Cluster, Node
from nemesis.remote import on_nodes

# The library re-reads the offset file every 20 ms; scheduling and the HTTP handler add a little.
REACH_SLACK_MS = 50.0
# A VM's step is measured on the node in one process (realtime against boottime): what is left
# is the microseconds between reading the clock and setting it, and any slewing in between.
STEP_RESOLUTION_MS = 10.0
# Runtimes whose nodes read the control machine's own clock: their system offset is exactly 0.
SHARED_CLOCK_RUNTIMES: frozenset[str] = frozenset({"netns", "local"})


@dataclass(frozen=True, slots=True)
class NodeReach:
    node: str
    by: Literal["server", "process", "system"]
    reached: bool | None
    expected_ms: float
    seen_ms: float | None = None
    tolerance_ms: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"by": self.by, "reached": self.reached}
        out["expected_ms"] = round(self.expected_ms, 3)
        if self.seen_ms is not None:
            out["seen_ms"] = round(self.seen_ms, 3)
        if self.tolerance_ms is not None:
            out["tolerance_ms"] = round(self.tolerance_ms, 3)
        if self.detail:
            out["detail"] = self.detail
        return out


def daemons_command(node: Node) -> str:
    """Prints ``DAEMON <name> <pid> <1 if the library is mapped, else 0>`` per running daemon,
    leaving out the bench's own helpers (``lockbench-*`` pidfiles, and daemons started with
    ``faketime=False``, which keep the real clock on purpose)."""
    data_dir = shlex.quote(node.data_dir)
    return (
        f'for p in {data_dir}/*.pid; do [ -f "$p" ] || continue; n=$(basename "$p" .pid); '
        'case "$n" in lockbench-*) continue;; esac; '
        # helpers started on the real clock on purpose (start_daemon(faketime=False))
        f'[ -e {data_dir}/."$n".realtime ] && continue; pid=$(cat "$p" 2>/dev/null); '
        '[ -n "$pid" ] && [ -r "/proc/$pid/maps" ] || continue; '
        # a killed daemon not yet reaped is a zombie: no memory map, and not a server
        'grep -q "^State:[[:space:]]*Z" "/proc/$pid/status" 2>/dev/null && continue; '
        f'if grep -q {shlex.quote(NODE_LIBRARY)} "/proc/$pid/maps" 2>/dev/null; '
        'then echo "DAEMON $n $pid 1"; else echo "DAEMON $n $pid 0"; fi; done; true'
    )


def parse_daemons(lines: Sequence[str]) -> dict[str, bool]:
    """``{"lockd(1234)": True}`` from daemons_command's output."""
    found: dict[str, bool] = {}
    for line in lines:
        words = line.split()
        if len(words) == 4 and words[0] == "DAEMON":
            found[f"{words[1]}({words[2]})"] = words[3] == "1"
    return found


def by_process(node: str, expected_ms: float, daemons: Mapping[str, bool]) -> NodeReach:
    if not daemons:
        return NodeReach(node, "process", None, expected_ms, detail="no server running")
    without = sorted(name for name, mapped in daemons.items() if not mapped)
    if without:
        detail = f"running without the clock library: {', '.join(without)}"
        return NodeReach(node, "process", False, expected_ms, detail=detail)
    detail = f"clock library loaded in {', '.join(sorted(daemons))}"
    return NodeReach(node, "process", True, expected_ms, detail=detail)


def by_server(
    node: Node,
    backend: ServerClock,
    expected_ms: float,
    system_ms: float,
    system_uncertainty_ms: float,
) -> NodeReach | None:
    """Compare the server's own clock with the expected offset; None if it does not answer."""
    before = time.time()
    try:
        seen = backend.server_clock(node)
    except Exception as exc:  # a server that cannot answer now is checked by its process
        return NodeReach(node.name, "server", None, expected_ms, detail=f"no answer: {exc}")
    after = time.time()
    if seen is None:
        return None
    seen_ms = (seen - (before + after) / 2) * 1000.0 - system_ms
    tolerance = (after - before) * 500.0 + system_uncertainty_ms + REACH_SLACK_MS
    reached = abs(seen_ms - expected_ms) <= tolerance
    detail = "" if reached else "the server's own clock does not show the offset"
    return NodeReach(node.name, "server", reached, expected_ms, seen_ms, tolerance, detail)


def by_system(node: str, set_ms: float, measured_ms: float) -> NodeReach:
    """A node with its own kernel clock: the step the nemesis set must show in it, as measured
    on the node itself (realtime against boottime, nemesis.system_clock); every process there,
    the servers included, reads that clock."""
    tolerance = REACH_SLACK_MS + STEP_RESOLUTION_MS
    reached = abs(measured_ms - set_ms) <= tolerance
    detail = (
        "the node's system clock shows the step; every process there reads it"
        if reached
        else "the node's system clock does not show the step the nemesis set"
    )
    return NodeReach(node, "system", reached, set_ms, measured_ms, tolerance, detail)


def check_reach(
    cluster: Cluster,
    backend: Backend,
    offsets_ms: Mapping[str, float],
    system_offsets_ms: Mapping[str, float],
    uncertainty_ms: Mapping[str, float],
    daemons: Mapping[str, Mapping[str, bool]],
    stepped_ms: Mapping[str, float] | None = None,
) -> dict[str, NodeReach]:
    """Per node: did the offset a fresh process reads (``offsets_ms``) reach its server?"""
    shared = cluster.runtime in SHARED_CLOCK_RUNTIMES
    system_clock = steps_system_clock(cluster.runtime)
    stepped = stepped_ms or {}

    def check(node: Node) -> NodeReach:
        name = node.name
        expected = offsets_ms[name]
        if system_clock:
            return by_system(name, stepped.get(name, 0.0), expected)
        if isinstance(backend, ServerClock):
            system = 0.0 if shared else system_offsets_ms[name]
            uncertainty = 0.0 if shared else uncertainty_ms[name]
            answer = by_server(node, backend, expected, system, uncertainty)
            if answer is not None and answer.reached is not None:
                return answer
        return by_process(name, expected, daemons.get(name, {}))

    nodes = [node for node in cluster.nodes if node.name in offsets_ms]
    results = on_nodes(nodes, check)
    return {
        name: (
            result
            if isinstance(result, NodeReach)
            else NodeReach(name, "process", None, offsets_ms[name], detail=str(result))
        )
        for name, result in results.items()
    }
