"""Clock faults: bump, strobe, drift and reset the wall clock a node's servers see.

Servers on a node armed for clock faults run under the bench's wall-clock library reading
``{data_dir}/clock.offset`` (lockbench.clock_preload), re-read at most every 20 ms. A bump
rewrites that file; a strobe or a drift runs a small driver on the node (nemesis/clock_driver.py)
that keeps rewriting it for the fault's duration. The host clock is never stepped: netns nodes
share it with everything else.

Offsets are written as signed seconds with microseconds (``+0.500000``), never with a unit.

On runtimes whose nodes have their own kernel clock (VMs: ``steps_system_clock``) bumps and
resets step the node's system clock instead (nemesis.system_clock), which every server there
reads, Go ones included; strobes and drifts are refused there before the run.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockbench.clock_preload import OFFSET_ENV, node_library_path, offset_path, steps_system_clock
from lockbench.protocols import Backend, Cluster, FaultAction, Node
from nemesis.clock_check import check_reach, daemons_command, parse_daemons
from nemesis.fault import FaultTarget, HealError
from nemesis.remote import (
    NemesisActionError,
    NodeLocks,
    error_messages,
    helper_pidfile,
    on_nodes,
    raise_first,
    run_checked,
    start_helper,
    stop_helper_command,
)
from nemesis.spec import MAX_CLOCK_OFFSET_MS, ClockOptions
from nemesis.system_clock import parse_state, state_command, step_to

DRIVER_SOURCE = (Path(__file__).with_name("clock_driver.py")).read_text(encoding="utf-8")
# The driver may outlive the fault's window by this much before it stops by itself.
DRIVER_GRACE_SECONDS = 10.0


def format_offset(offset_ms: float) -> str:
    """The offset file's text, e.g. ``+0.500000`` for 500 ms."""
    return f"{offset_ms / 1000.0:+.6f}"


def parse_offset(text: str) -> float:
    """Milliseconds from the offset file's text (as written by this module or the driver)."""
    stripped = text.strip()
    return float(stripped) * 1000.0 if stripped else 0.0


def write_offset_command(node: Node, offset_ms: float) -> str:
    """Replace the offset file atomically (a server must never read a half-written file)."""
    path = shlex.quote(offset_path(node))
    temporary = shlex.quote(offset_path(node) + ".tmp")
    return (
        f"mkdir -p {shlex.quote(node.data_dir)} && "
        f"printf '%s\\n' {shlex.quote(format_offset(offset_ms))} > {temporary} && "
        f"mv -f {temporary} {path}"
    )


def clamp(offset_ms: float) -> float:
    return max(-MAX_CLOCK_OFFSET_MS, min(MAX_CLOCK_OFFSET_MS, offset_ms))


class ClockNemesis:
    """Implements lockbench.protocols.Nemesis for one ``clock`` entry of the test file.

    ``offsets`` is shared by every clock entry of a run: the offset last written per node, so
    successive bumps without reset accumulate as they would on a real clock.
    """

    name = "clock"

    def __init__(
        self,
        cluster: Cluster,
        options: ClockOptions,
        index: int,
        locks: NodeLocks,
        offsets: dict[str, float],
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.helper = f"clock-{index}"
        self.locks = locks
        self.offsets = offsets
        self.touched: set[str] = set()
        self.driving: set[str] = set()

    def setup(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def invoke(self, f: str, target: object) -> FaultAction:
        if f == "start-clock":
            if not isinstance(target, FaultTarget):
                raise TypeError("start-clock needs a FaultTarget")
            return self._start(target)
        if f == "stop-clock":
            return self._stop()
        raise ValueError(f"clock nemesis cannot {f!r}")

    def _write(self, name: str, offset_ms: float) -> None:
        node = self.cluster.node(name)
        with self.locks.lock(name):
            if steps_system_clock(self.cluster.runtime):
                step_to(node, offset_ms)
            else:
                command = write_offset_command(node, offset_ms)
                run_checked(node, command, "writing the clock offset")
        self.offsets[name] = offset_ms

    def _start(self, target: FaultTarget) -> FaultAction:
        options = self.options
        nodes = [self.cluster.node(n) for n in target.nodes]
        self.touched.update(target.nodes)
        description: dict[str, object] = {"mode": options.mode, "nodes": list(target.nodes)}
        if options.mode in ("bump", "reset"):
            new = {
                n: clamp(self.offsets.get(n, 0.0) + options.offset_ms)
                if options.mode == "bump"
                else 0.0
                for n in target.nodes
            }
            raise_first(on_nodes(nodes, lambda node: self._write(node.name, new[node.name])))
            description["offsets_ms"] = new
            if options.mode == "bump":
                description["delta_ms"] = options.offset_ms
            return FaultAction("start-clock", description)
        seconds = target.hold_seconds + DRIVER_GRACE_SECONDS
        bases = {n: self.offsets.get(n, 0.0) for n in target.nodes}

        def drive(node: Node) -> int:
            base = bases[node.name]
            value = options.offset_ms if options.mode == "strobe" else options.rate
            args = [options.mode, offset_path(node), f"{base:.3f}", f"{value:.6f}"]
            args += [f"{options.period_ms:.0f}", f"{seconds:.1f}"]
            with self.locks.lock(node.name):
                return start_helper(node, self.helper, DRIVER_SOURCE, args)

        self.driving.update(target.nodes)
        pids = raise_first(on_nodes(nodes, drive))
        description.update({"base_ms": bases, "period_ms": options.period_ms, "pids": pids})
        if options.mode == "strobe":
            description["flip_ms"] = options.offset_ms
        else:
            description["rate"] = options.rate
        return FaultAction("start-clock", description)

    def _stop_drivers(self) -> list[str]:
        driving = sorted(self.driving)

        def stop(node: Node) -> None:
            command = stop_helper_command(helper_pidfile(node, self.helper))
            command += f" && cat {shlex.quote(offset_path(node))}"
            with self.locks.lock(node.name):
                result = run_checked(node, command, "stopping the clock driver")
            self.offsets[node.name] = parse_offset(result.stdout)

        results = on_nodes([self.cluster.node(n) for n in driving], stop)
        self.driving = {n for n, r in results.items() if isinstance(r, Exception)}
        return error_messages(results)

    def _stop(self) -> FaultAction:
        errors = self._stop_drivers()
        touched = sorted(self.touched)
        description: dict[str, object] = {"mode": self.options.mode, "nodes": touched}
        if self.options.reset_on_stop and self.options.mode != "reset":
            nodes = [self.cluster.node(n) for n in touched]
            errors += error_messages(on_nodes(nodes, lambda node: self._write(node.name, 0.0)))
            description["offsets_ms"] = dict.fromkeys(touched, 0.0)
        else:
            description["offsets_ms"] = {n: self.offsets.get(n, 0.0) for n in touched}
            description["kept"] = True
        self.touched = set()
        if errors:
            raise NemesisActionError("; ".join(errors))
        return FaultAction("stop-clock", description)

    def heal(self) -> FaultAction | None:
        """Stop drivers and put every node this entry touched back on the real time."""
        touched = sorted(self.touched | self.driving | {n for n, v in self.offsets.items() if v})

        def reset_node(node: Node) -> None:
            if steps_system_clock(self.cluster.runtime):
                with self.locks.lock(node.name):
                    step_to(node, 0.0)
                self.offsets[node.name] = 0.0
                return
            command = stop_helper_command(helper_pidfile(node, self.helper)) + " && "
            command += write_offset_command(node, 0.0)
            with self.locks.lock(node.name):
                run_checked(node, command, "stopping the clock driver and resetting the clock")
            self.offsets[node.name] = 0.0

        results = on_nodes([self.cluster.node(n) for n in touched], reset_node)
        errors = error_messages(results)
        self.driving = {n for n, r in results.items() if isinstance(r, Exception)}
        if errors:
            raise HealError(errors)
        self.touched = set()
        if not touched:
            return None
        reset = dict.fromkeys(touched, 0.0)
        return FaultAction("stop-clock", {"nodes": touched, "offsets_ms": reset})

    def teardown(self) -> None:
        self.heal()


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Measured node clocks.

    ``offsets_ms``: the node's clock as its servers see it (under the clock library) minus the
    node's system clock, both read on the node within a few milliseconds: the injected offset,
    exactly.
    ``system_offsets_ms``: the node's system clock minus the control node's, taken at the middle
    of the command's round trip; ``uncertainty_ms`` (half that round trip) bounds its error.
    ``daemons``: per node, each running daemon and whether the clock library is mapped in it
    (for nemesis.clock_check; not recorded as such).
    ``stepped_ms``: nodes whose own system clock is stepped (nemesis.system_clock), with the
    offset the nemesis set; their ``offsets_ms`` is then the step *measured* on the node: its
    realtime minus boottime clock now, minus the same before the first step.
    """

    offsets_ms: Mapping[str, float]
    system_offsets_ms: Mapping[str, float]
    uncertainty_ms: Mapping[str, float]
    daemons: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    stepped_ms: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, dict[str, float]]:
        def rounded(values: Mapping[str, float]) -> dict[str, float]:
            return {k: round(v, 3) for k, v in sorted(values.items())}

        out = {
            "offsets_ms": rounded(self.offsets_ms),
            "system_offsets_ms": rounded(self.system_offsets_ms),
            "uncertainty_ms": rounded(self.uncertainty_ms),
        }
        if self.stepped_ms:
            out["stepped_ms"] = rounded(self.stepped_ms)
        return out


def probe_time_command(node: Node) -> str:
    """Print the system time, the time servers see (a fresh ``date`` under the clock library
    if the node is armed), and the system time again, one per line; then a ``DAEMON`` line per
    running daemon saying whether the library is loaded in it (nemesis.clock_check)."""
    library = shlex.quote(node_library_path(node))
    offset = shlex.quote(offset_path(node))
    return (
        "date +%s.%N; "
        f"if [ -e {library} ] && [ -e {offset} ]; then "
        f"LD_PRELOAD={library} {OFFSET_ENV}={offset} date +%s.%N; "
        "else date +%s.%N; fi; date +%s.%N; " + daemons_command(node) + "; " + state_command(node)
    )


def measure_clock_offsets(cluster: Cluster) -> ClockReading:
    """Ask every node its time (in parallel); see ClockReading for what is measured how."""

    def ask(node: Node) -> tuple[float, float, float, dict[str, bool], float | None]:
        command = probe_time_command(node)
        before = time.time()
        result = run_checked(node, command, "reading the clock")
        after = time.time()
        lines = result.stdout.strip().splitlines()
        times = [line for line in lines if line[:1].isdigit()][-3:]
        system_before, served, system_after = (float(x) for x in times)
        system = (system_before + system_after) / 2
        system_ms = (system - (before + after) / 2) * 1000.0
        offset_ms = (served - system) * 1000.0
        step = parse_state(lines)
        stepped = None
        if step is not None:
            stepped, offset_ms = step.set_ms, step.measured_ms
        elif system_clock:
            # nothing injected, no library: the two dates differ only by an exec's time
            offset_ms = 0.0
        return (offset_ms, system_ms, (after - before) * 500.0, parse_daemons(lines), stepped)

    system_clock = steps_system_clock(cluster.runtime)
    readings = raise_first(on_nodes(list(cluster.nodes), ask))
    return ClockReading(
        offsets_ms={n: r[0] for n, r in readings.items()},
        system_offsets_ms={n: r[1] for n, r in readings.items()},
        uncertainty_ms={n: r[2] for n, r in readings.items()},
        daemons={n: r[3] for n, r in readings.items()},
        stepped_ms={n: r[4] for n, r in readings.items() if r[4] is not None},
    )


def record_clocks(cluster: Cluster, backend: Backend) -> dict[str, Any]:
    """The ``f: "clock"`` record: measured offsets and, per node, whether they reached its
    server (nemesis.clock_check). A mismatch is measured once more before it is recorded as
    ``not_reached``: a strobe or drift may move the offset between the two readings."""
    value: dict[str, Any] = {}
    for _attempt in range(2):
        reading = measure_clock_offsets(cluster)
        reach = check_reach(
            cluster,
            backend,
            reading.offsets_ms,
            reading.system_offsets_ms,
            reading.uncertainty_ms,
            reading.daemons,
            reading.stepped_ms,
        )
        value = {**reading.to_json(), "reach": {n: r.to_json() for n, r in sorted(reach.items())}}
        not_reached = sorted(n for n, r in reach.items() if r.reached is False)
        if not not_reached:
            return value
        value["not_reached"] = not_reached
    return value
