"""Can a clock fault reach a backend's servers? Decided before the run, from their programs.

The wall-clock library (lockbench.clock_preload) moves only programs that read the clock
through libc: a Go program reads it through the vDSO itself, and nothing is preloaded into a
static one. A backend says which programs its servers run (``ClockServers.server_programs``);
``clock_reach`` resolves them on every node and reads their ELF headers (lockbench/elf_probe.py,
run on the node), so a clock fault that could not reach a server is refused before anything
starts, with the reason, instead of being recorded as injected. ``lockbench compare`` asks the
same question per backend and prints the reason in the cell.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from lockbench.clock_preload import steps_system_clock
from lockbench.errors import ConfigError
from lockbench.parallel import on_each_node
from lockbench.protocols import Backend, Cluster, Node

ELF_PROBE = Path(__file__).with_name("elf_probe.py").read_text(encoding="utf-8")
ProgramKind = Literal["dynamic", "go", "static", "missing", "not-elf"]


@runtime_checkable
class ClockServers(Protocol):
    """Optional part of a Backend: the programs its servers run, for the clock-reach check.

    Name the program that serves, as the node resolves it (a path, or a name on PATH): for a
    server started through a shell script name the binary the script runs (``java`` for
    ZooKeeper), since a ``#!`` line is followed but a script's own ``exec`` is not.
    """

    def server_programs(self, node: Node) -> Sequence[str]: ...


@runtime_checkable
class ServerClock(Protocol):
    """Optional part of a Backend: the wall clock its running server reports itself.

    The clock nemesis calls it after every clock action to check that the fault reached the
    server (lockd: ``wall_time`` in ``/status``; Redis: ``TIME``). Return seconds since the
    epoch as the server sees them, or None when the server cannot answer now (the check then
    falls back to looking for the library in the server's process).
    """

    def server_clock(self, node: Node) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ProgramReach:
    """One program on one node: what it is, and whether the library can move its clock."""

    node: str
    program: str
    path: str | None
    kind: ProgramKind
    detail: str

    @property
    def reachable(self) -> bool:
        return self.kind == "dynamic"

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "program": self.program,
            "path": self.path,
            "kind": self.kind,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ClockReach:
    """The answer for one backend on one cluster.

    ``reachable``: True (every server program reads the clock through libc), False (``reason``
    says which program cannot be moved, and why), or None (the backend names no programs: only
    the check after each clock action can tell).
    """

    backend: str
    runtime: str
    reachable: bool | None
    reason: str
    programs: tuple[ProgramReach, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runtime": self.runtime,
            "reachable": self.reachable,
            "reason": self.reason,
            "programs": [p.to_json() for p in self.programs],
        }


def inspect_command(programs: Sequence[str]) -> str:
    return "python3 -c " + " ".join(shlex.quote(arg) for arg in [ELF_PROBE, *programs])


def inspect_programs(node: Node, programs: Sequence[str]) -> list[ProgramReach]:
    """Resolve and classify ``programs`` on the node (see lockbench/elf_probe.py)."""
    result = node.run(inspect_command(programs), timeout=60)
    found: list[Mapping[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return [
        ProgramReach(node.name, str(f["program"]), f["path"], f["kind"], str(f["detail"]))
        for f in found
    ]


def _cannot(name: str, runtime: str, why: str) -> str:
    return f"clock fault cannot reach {name} on this runtime ({runtime}): {why}"


def clock_reach(backend: Backend, cluster: Cluster, *, missing_ok: bool = False) -> ClockReach:
    """Whether a clock fault can reach ``backend``'s servers on ``cluster``.

    ``missing_ok``: a program not found yet is not a refusal (before ``deploy`` installs it).
    """
    name, runtime = backend.name, cluster.runtime
    if "clock" not in cluster.capabilities:
        why = f"the {runtime} runtime cannot inject clock faults here"
        return ClockReach(name, runtime, False, _cannot(name, runtime, why))
    if steps_system_clock(runtime):
        why = f"the {runtime} runtime steps each node's own system clock, which every program reads"
        return ClockReach(name, runtime, True, why)
    if not isinstance(backend, ClockServers):
        why = (
            f"{name} names no server programs (Backend.server_programs), so only the check "
            "after each clock action can tell whether its servers see the fault"
        )
        return ClockReach(name, runtime, None, why)
    nodes = list(cluster.nodes)
    per_node = on_each_node(
        "inspecting server programs for clock faults",
        nodes,
        lambda node: inspect_programs(node, list(backend.server_programs(node))),
    )
    programs = tuple(p for node in nodes for p in per_node[node.name])
    blocking = [p for p in programs if not p.reachable and not (missing_ok and p.kind == "missing")]
    if blocking:
        first = blocking[0]
        where = first.path or first.program
        why = f"{where} on {first.node} is {first.detail}"
        if first.kind == "missing":
            why = f"{first.program} not found on {first.node}"
        elif first.kind == "not-elf":
            why = f"{where} on {first.node} is not an ELF program (name the binary that serves)"
        return ClockReach(name, runtime, False, _cannot(name, runtime, why), programs)
    listed = ", ".join(sorted({p.path or p.program for p in programs}))
    reason = f"every {name} server program reads the clock through libc ({listed})"
    return ClockReach(name, runtime, True, reason, programs)


def require_clock_reach(backend: Backend, cluster: Cluster, *, missing_ok: bool = False) -> None:
    """ConfigError (before anything starts) when a clock fault cannot reach the servers."""
    reach = clock_reach(backend, cluster, missing_ok=missing_ok)
    if reach.reachable is False:
        raise ConfigError(reach.reason)
