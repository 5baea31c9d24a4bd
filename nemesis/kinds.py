"""The bundled faults as plug-ins: each ``lockbench.nemeses`` entry point (pyproject.toml) names
one of these kinds, found the way a third-party fault would be.

A kind checks its entry of the ``nemesis:`` list (nemesis/spec.py does the parsing), picks each
start's target (seeded, by the schedule's RNG) and builds the Nemesis that injects it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lockbench.protocols import ClusterFacts, Nemesis, NemesisSetting
from nemesis import shapes
from nemesis.clock import ClockNemesis
from nemesis.fault import FaultTarget, entry_rng
from nemesis.netem import NetemNemesis
from nemesis.partition import PartitionNemesis
from nemesis.power import POWER_LOSS_MOUNTS, PowerLossMounts, PowerLossNemesis
from nemesis.process import ProcessFault, ProcessNemesis
from nemesis.spec import (
    NetemOptions,
    PartitionOptions,
    parse_clock,
    parse_netem,
    parse_partition,
    parse_power_loss,
    parse_process,
)
from nemesis.targets import resolve_target

Leader = Callable[[], str | None]
NO_LEADER = "no leader known"
# Heal phases (lockbench.protocols.FaultKind.heal_phase): let paused servers answer first, then
# reconnect the network and fix the clocks (in parallel), restart killed servers last.
RESUME, NETWORK_AND_CLOCKS, RESTART = 0, 1, 2


@dataclass(frozen=True, slots=True)
class PartitionKind:
    """``partition``: iptables rules (or the local runtime's link proxy) in a grudge's shape."""

    name: str = "partition"
    keys: frozenset[str] = frozenset({"shape", "minority_size", "grudge", "target"})
    capability: str | None = "partition"
    heal_phase: int = NETWORK_AND_CLOCKS

    def parse(self, where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> Any:
        return parse_partition(where, entry, facts)

    def build(self, setting: NemesisSetting, index: int, options: Any) -> Nemesis:
        return PartitionNemesis(setting.cluster, f"lockbench-{index}", setting.node_locks)

    def target(
        self, options: Any, nodes: Sequence[str], rng: Any, leader: Leader, hold: float
    ) -> Any:
        grudge = self._grudge(options, list(nodes), rng, leader)
        if grudge is None:
            return NO_LEADER
        return FaultTarget(nodes=tuple(sorted(grudge)), grudge=grudge, hold_seconds=hold)

    @staticmethod
    def _grudge(
        options: PartitionOptions, names: list[str], rng: random.Random, leader: Leader
    ) -> dict[str, frozenset[str]] | None:
        shape = options.shape
        if shape == "halves":
            return shapes.random_halves(names, rng)
        if shape == "majority-minority":
            assert options.minority_size is not None
            return shapes.majority_minority(names, rng, options.minority_size)
        if shape == "majorities-ring":
            return shapes.majorities_ring(names, rng)
        if shape == "bridge":
            return shapes.bridge(names, rng)
        if shape == "grudge":
            return shapes.explicit(options.grudge)
        target = options.target if shape == "isolate-one" else None
        if target is None:
            victim = leader()
        else:
            chosen = resolve_target(target, names, rng, leader)
            victim = chosen[0] if chosen else None
        return shapes.isolate(names, victim) if victim in names else None


# The keys every node-targeted fault takes: which nodes (``target``) and how many (``count``).
NODE_KEYS = frozenset({"target", "count"})
Build = Callable[[NemesisSetting, int, Any], Nemesis]
Parse = Callable[[str, Mapping[str, Any], ClusterFacts], Any]


@dataclass(frozen=True, slots=True)
class NodesKind:
    """A fault that hits chosen nodes (its entry's ``target``, seeded by the schedule's RNG):
    kill, pause, power-loss, clock and netem differ only in their keys, parser and Nemesis."""

    name: str
    keys: frozenset[str]
    capability: str | None
    heal_phase: int
    parse_entry: Parse
    build_nemesis: Build

    def parse(self, where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> Any:
        return self.parse_entry(where, entry, facts)

    def build(self, setting: NemesisSetting, index: int, options: Any) -> Nemesis:
        return self.build_nemesis(setting, index, options)

    def target(
        self, options: Any, nodes: Sequence[str], rng: Any, leader: Leader, hold: float
    ) -> Any:
        chosen = resolve_target(options.target, list(nodes), rng, leader)
        return FaultTarget(nodes=chosen, hold_seconds=hold) if chosen else NO_LEADER


@dataclass(frozen=True, slots=True)
class NetemKind(NodesKind):
    """``netem`` also takes explicit ``links``: then it hits the nodes those links join."""

    def target(
        self, options: Any, nodes: Sequence[str], rng: Any, leader: Leader, hold: float
    ) -> Any:
        if isinstance(options, NetemOptions) and options.links:
            linked = tuple(sorted({n for link in options.links for n in link}))
            return FaultTarget(nodes=linked, hold_seconds=hold)
        return NodesKind.target(self, options, nodes, rng, leader, hold)


def _process_nemesis(fault: ProcessFault) -> Build:
    """kill -9 then start, or SIGSTOP then SIGCONT, through the Backend."""

    def build(setting: NemesisSetting, index: int, options: Any) -> Nemesis:
        return ProcessNemesis(fault, setting.cluster, setting.backend, setting.node_locks)

    return build


def _power_loss_nemesis(setting: NemesisSetting, index: int, options: Any) -> Nemesis:
    """kill -9 plus the loss of every write not fsynced (nemesis/power.py)."""
    mounts = setting.shared.get(POWER_LOSS_MOUNTS)
    if mounts is None:  # one filesystem per node, whatever the number of entries
        mounts = PowerLossMounts(setting.cluster, setting.backend)
        setting.shared[POWER_LOSS_MOUNTS] = mounts
    return PowerLossNemesis(setting.cluster, setting.backend, mounts, setting.node_locks)


def _clock_nemesis(setting: NemesisSetting, index: int, options: Any) -> Nemesis:
    """Wall-clock offsets per node through the bench's clock library (bump, strobe, drift,
    reset)."""
    return ClockNemesis(setting.cluster, options, index, setting.node_locks, setting.clock_offsets)


def _netem_nemesis(setting: NemesisSetting, index: int, options: Any) -> Nemesis:
    """Delay, jitter, loss, reordering per node or per link (tc or the link proxy)."""
    rng = entry_rng(setting.seed, index, "netem")
    return NetemNemesis(setting.cluster, options, index, setting.node_locks, rng)


PARTITION = PartitionKind()
KILL = NodesKind("kill", NODE_KEYS, "kill", RESTART, parse_process, _process_nemesis("kill"))
PAUSE = NodesKind("pause", NODE_KEYS, "pause", RESUME, parse_process, _process_nemesis("pause"))
POWER_LOSS = NodesKind(
    "power-loss", NODE_KEYS, "power-loss", RESTART, parse_power_loss, _power_loss_nemesis
)
CLOCK = NodesKind(
    "clock",
    NODE_KEYS | {"mode", "offset_ms", "period_ms", "rate", "reset_on_stop"},
    "clock",
    NETWORK_AND_CLOCKS,
    parse_clock,
    _clock_nemesis,
)
NETEM = NetemKind(
    "netem",
    NODE_KEYS | {"links", "delay_ms", "jitter_ms", "loss", "reorder", "duplicate"},
    "netem",
    NETWORK_AND_CLOCKS,
    parse_netem,
    _netem_nemesis,
)
