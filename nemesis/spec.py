"""The ``nemesis:`` list of a test file, parsed and checked before anything starts.

A mistake in a fault plan found after the cluster is up wastes a whole run, so every key is checked
here against the cluster it will run on: node names, a minority that really is one, faults the
runtime can do and offsets a lease-based service can be expected to survive. Errors name the entry
(``nemesis[2] (clock)``), the key and the reason. See docs/nemeses.md for the format.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from lockbench.clock_preload import steps_system_clock
from lockbench.errors import ConfigError
from lockbench.plugins import NEMESES, has_plugin, load_plugin, plugin_names
from lockbench.protocols import ClusterFacts, FaultKind

PARTITION_SHAPES: tuple[str, ...] = (
    "halves",
    "majority-minority",
    "majorities-ring",
    "bridge",
    "isolate-one",
    "isolate-leader",
    "grudge",
)
TARGET_KINDS: tuple[str, ...] = ("random", "leader", "minority", "majority", "all")
CLOCK_MODES: tuple[str, ...] = ("bump", "strobe", "drift", "reset")

# A clock further off than an hour tests nothing a lease service can survive and usually means a
# unit mistake (seconds written as milliseconds); the clock library would accept it silently.
MAX_CLOCK_OFFSET_MS = 3_600_000.0
# The wall-clock library re-reads the offset file at most every 20 ms (lockbench.clock_preload)
# and the driver rewrites it from a Python loop: a strobe or drift step ten times that is still
# seen at every step. (libfaketime, used before, re-read only every 2 s and needed 3 s.)
MIN_CLOCK_PERIOD_MS = 200.0
DEFAULT_CLOCK_PERIOD_MS = 3_000.0
# A rate outside this band is a different fault (a stopped or racing clock), not a skew.
MIN_CLOCK_RATE, MAX_CLOCK_RATE = 0.5, 2.0
# Delays longer than this stall every TCP connection into timeouts; that is a partition.
MAX_NETEM_DELAY_MS = 10_000.0

DEFAULT_SCHEDULE: Mapping[str, Any] = {"interval": 10, "duration": 5}

TargetKind: TypeAlias = Literal["random", "leader", "minority", "majority", "all", "nodes"]
ClockMode: TypeAlias = Literal["bump", "strobe", "drift", "reset"]


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Quiet for ``interval - duration`` seconds, then the fault for ``duration``, repeated."""

    interval: float
    duration: float


@dataclass(frozen=True, slots=True)
class RandomSchedule:
    """Quiet gaps and fault durations drawn uniformly (seeded) from the given ranges."""

    gap: tuple[float, float]
    duration: tuple[float, float]


@dataclass(frozen=True, slots=True)
class ExplicitSchedule:
    """Fault windows ``(start, stop)`` in seconds from the start of the run."""

    windows: tuple[tuple[float, float], ...]


Schedule: TypeAlias = IntervalSchedule | RandomSchedule | ExplicitSchedule


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """Which nodes a fault hits; resolved afresh (seeded) at each start."""

    kind: TargetKind
    count: int | None = None
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionOptions:
    shape: str
    minority_size: int | None = None
    grudge: tuple[tuple[str, tuple[str, ...]], ...] = ()
    target: TargetSpec = TargetSpec("random")


@dataclass(frozen=True, slots=True)
class ProcessOptions:
    """Options of ``kill`` and ``pause``: whom to hit."""

    target: TargetSpec


@dataclass(frozen=True, slots=True)
class ClockOptions:
    mode: ClockMode
    target: TargetSpec
    offset_ms: float = 0.0
    period_ms: float = DEFAULT_CLOCK_PERIOD_MS
    rate: float = 1.0
    reset_on_stop: bool = True


@dataclass(frozen=True, slots=True)
class NetemOptions:
    """A bad network: delay with jitter, loss, reordering, per node or per link."""

    target: TargetSpec
    links: tuple[tuple[str, str], ...] = ()
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0


@dataclass(frozen=True, slots=True)
class PowerLossOptions:
    """Options of ``power-loss``: whose servers lose power (kill -9 plus un-fsynced writes)."""

    target: TargetSpec


FaultOptions: TypeAlias = (
    PartitionOptions | ProcessOptions | ClockOptions | NetemOptions | PowerLossOptions
)


@dataclass(frozen=True, slots=True)
class NemesisSpec:
    """One validated entry of the ``nemesis:`` list; ``kind`` is the plug-in that parsed it."""

    index: int
    fault: str
    schedule: Schedule
    options: Any
    kind: FaultKind

    @property
    def label(self) -> str:
        return f"nemesis[{self.index}] ({self.fault})"


COMMON_KEYS: frozenset[str] = frozenset({"fault", "schedule"})


def parse_specs(raw: Sequence[Mapping[str, Any]], facts: ClusterFacts) -> tuple[NemesisSpec, ...]:
    """Parse and check every entry; the first problem raises ConfigError naming it."""
    if not isinstance(raw, list | tuple):
        raise ConfigError("nemesis: expected a list of fault entries, e.g. [{fault: partition}]")
    return tuple(_parse_one(index, entry, facts) for index, entry in enumerate(raw))


def _parse_one(index: int, entry: Any, facts: ClusterFacts) -> NemesisSpec:
    where = f"nemesis[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'fault' key, got {entry!r}")
    fault = entry.get("fault")
    if not isinstance(fault, str) or not has_plugin(NEMESES, fault):
        raise ConfigError(
            f"{where}: unknown nemesis fault {fault!r}; "
            f"known faults: {', '.join(plugin_names(NEMESES))}"
        )
    kind: FaultKind = load_plugin(NEMESES, fault)
    where = f"{where} ({fault})"
    allowed_keys = COMMON_KEYS | kind.keys
    unknown = sorted(set(entry) - allowed_keys)
    if unknown:
        allowed = ", ".join(sorted(allowed_keys))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    if kind.capability is not None and kind.capability not in facts.capabilities:
        can = ", ".join(sorted(facts.capabilities)) or "nothing"
        why = " (its filesystem mounts through /dev/fuse: run as root)" * (fault == "power-loss")
        raise ConfigError(
            f"{where}: the {facts.runtime} runtime cannot inject {fault} faults{why} "
            f"(it can do: {can})"
        )
    schedule = _parse_schedule(where, entry.get("schedule", DEFAULT_SCHEDULE))
    options = kind.parse(where, entry, facts)
    return NemesisSpec(index=index, fault=fault, schedule=schedule, options=options, kind=kind)


# ------------------------------------------------------------------------------------------------
# Schedules


def _parse_schedule(where: str, raw: Any) -> Schedule:
    where = f"{where}: schedule"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping ({{interval, duration}}, {{random}} or {{at}})"
        )
    forms = [k for k in ("interval", "random", "at") if k in raw]
    if len(forms) != 1:
        raise ConfigError(
            f"{where}: give exactly one of 'interval' (with 'duration'), 'random' or 'at'; "
            f"got keys {sorted(raw)}"
        )
    form = forms[0]
    allowed = {"interval": {"interval", "duration"}, "random": {"random"}, "at": {"at"}}[form]
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{where}: key(s) {', '.join(extra)} do not go with {form!r}")
    if form == "interval":
        interval = _positive(where, "interval", raw["interval"])
        duration = _positive(where, "duration", raw.get("duration"))
        if duration >= interval:
            raise ConfigError(
                f"{where}: duration {duration} must be shorter than interval {interval} "
                "(each cycle is a quiet period then the fault)"
            )
        return IntervalSchedule(interval, duration)
    if form == "random":
        body = raw["random"]
        if not isinstance(body, Mapping) or set(body) != {"gap", "duration"}:
            raise ConfigError(f"{where}.random: expected {{gap: [min, max], duration: [min, max]}}")
        return RandomSchedule(
            _range(f"{where}.random", "gap", body["gap"]),
            _range(f"{where}.random", "duration", body["duration"]),
        )
    windows_raw = raw["at"]
    if not isinstance(windows_raw, list) or not windows_raw:
        raise ConfigError(f"{where}.at: expected a non-empty list of [start, stop] seconds")
    windows: list[tuple[float, float]] = []
    previous_stop = -1.0
    for i, window in enumerate(windows_raw):
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise ConfigError(f"{where}.at[{i}]: expected [start, stop] seconds, got {window!r}")
        start, stop = (_number(f"{where}.at[{i}]", "window", v) for v in window)
        if start < 0 or stop <= start:
            raise ConfigError(f"{where}.at[{i}]: need 0 <= start < stop, got {window!r}")
        if start < previous_stop:
            raise ConfigError(f"{where}.at[{i}]: windows must be in order and not overlap")
        previous_stop = stop
        windows.append((start, stop))
    return ExplicitSchedule(tuple(windows))


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _positive(where: str, key: str, value: Any) -> float:
    number = _number(where, key, value)
    if number <= 0:
        raise ConfigError(f"{where}: {key} must be > 0 seconds, got {value!r}")
    return number


def _range(where: str, key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{where}: {key} must be a pair [min, max], got {value!r}")
    low, high = (_number(where, key, v) for v in value)
    if low < 0 or high < low:
        raise ConfigError(f"{where}: {key} needs 0 <= min <= max, got {value!r}")
    return low, high


def _fraction(where: str, key: str, value: Any) -> float:
    number = _number(where, key, value)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{where}: {key} is a probability between 0 and 1, got {value!r}")
    return number


# ------------------------------------------------------------------------------------------------
# Targets


def parse_target(
    where: str, entry: Mapping[str, Any], facts: ClusterFacts, default: str = "random"
) -> TargetSpec:
    raw = entry.get("target", default)
    count_raw = entry.get("count")
    n = len(facts.node_names)
    if isinstance(raw, str) and raw in facts.node_names and raw not in TARGET_KINDS:
        raw = [raw]
    if isinstance(raw, list):
        nodes = tuple(str(x) for x in raw)
        missing = [x for x in nodes if x not in facts.node_names]
        if missing or not nodes:
            raise ConfigError(
                f"{where}: target names unknown node(s) {missing or raw!r}; "
                f"nodes: {', '.join(facts.node_names)}"
            )
        if count_raw is not None:
            raise ConfigError(f"{where}: count does not go with a list of named nodes")
        return TargetSpec("nodes", None, nodes)
    if raw not in TARGET_KINDS:
        raise ConfigError(
            f"{where}: unknown target {raw!r}; use one of {', '.join(TARGET_KINDS)} "
            "or a list of node names"
        )
    kind: TargetKind = raw
    if count_raw is None:
        return TargetSpec(kind)
    if isinstance(count_raw, bool) or not isinstance(count_raw, int) or count_raw < 1:
        raise ConfigError(f"{where}: count must be a positive integer, got {count_raw!r}")
    count = count_raw
    limits = {
        "random": (1, n),
        "minority": (1, (n - 1) // 2),
        "majority": (n // 2 + 1, n),
    }
    if kind not in limits:
        raise ConfigError(f"{where}: count does not go with target {kind!r}")
    low, high = limits[kind]
    if not low <= count <= high:
        raise ConfigError(
            f"{where}: a {kind} of {count} out of {n} nodes is impossible "
            f"(a {kind} of {n} has {low}..{high} nodes)"
        )
    return TargetSpec(kind, count)


# ------------------------------------------------------------------------------------------------
# Faults


def _require_distinct_ip_addresses(where: str, facts: ClusterFacts) -> None:
    """iptables matches addresses: nodes sharing one (the local runtime) cannot be cut apart."""
    seen: dict[str, str] = {}
    for name in facts.node_names:
        address = facts.addresses[name]
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ConfigError(
                f"{where}: node {name} has address {address!r}; the iptables rules need IPv4 "
                "addresses in the inventory"
            ) from None
        if address in seen:
            raise ConfigError(
                f"{where}: nodes {seen[address]} and {name} share address {address}; "
                f"the {facts.runtime} runtime cannot separate them with iptables"
            )
        seen[address] = name


def parse_process(where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> ProcessOptions:
    return ProcessOptions(parse_target(where, entry, facts))


def parse_power_loss(where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> PowerLossOptions:
    if not facts.backend_state_dir:
        raise ConfigError(
            f"{where}: backend {facts.backend!r} does not declare the directory its server "
            "keeps its data in (a state_dir method, see docs/backends.md), so a power loss "
            "cannot reach that data"
        )
    return PowerLossOptions(parse_target(where, entry, facts))


def parse_partition(where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> PartitionOptions:
    if not facts.link_proxy:
        _require_distinct_ip_addresses(where, facts)
    shape = entry.get("shape", "halves")
    if shape not in PARTITION_SHAPES:
        raise ConfigError(
            f"{where}: unknown partition shape {shape!r}; shapes: {', '.join(PARTITION_SHAPES)}"
        )
    n = len(facts.node_names)
    if n < 2:
        raise ConfigError(f"{where}: a partition needs at least 2 nodes, the cluster has {n}")
    if shape in ("majorities-ring", "bridge") and n < 3:
        raise ConfigError(f"{where}: shape {shape} needs at least 3 nodes, the cluster has {n}")
    if "minority_size" in entry and shape != "majority-minority":
        raise ConfigError(f"{where}: minority_size only goes with shape majority-minority")
    if "grudge" in entry and shape != "grudge":
        raise ConfigError(f"{where}: grudge only goes with shape grudge")
    if "target" in entry and shape != "isolate-one":
        raise ConfigError(f"{where}: target only goes with shape isolate-one")
    minority_size: int | None = None
    if shape == "majority-minority":
        raw = entry.get("minority_size", (n - 1) // 2)
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= (n - 1) // 2:
            raise ConfigError(
                f"{where}: a minority of {raw!r} out of {n} nodes is impossible "
                f"(minority_size must be 1..{(n - 1) // 2})"
            )
        minority_size = raw
    grudge: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if shape == "grudge":
        grudge = _parse_grudge(where, entry.get("grudge"), facts)
    target = TargetSpec("random")
    if shape == "isolate-one":
        target = parse_target(where, entry, facts)
        if target.kind not in ("random", "leader", "nodes") or len(target.nodes) > 1:
            raise ConfigError(f"{where}: isolate-one takes target random, leader or one node name")
    return PartitionOptions(shape=shape, minority_size=minority_size, grudge=grudge, target=target)


def _parse_grudge(
    where: str, raw: Any, facts: ClusterFacts
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{where}: grudge must map a node to the nodes it cannot hear, e.g. {{n1: [n2, n3]}}"
        )
    out: list[tuple[str, tuple[str, ...]]] = []
    for victim, sources in raw.items():
        if victim not in facts.node_names:
            raise ConfigError(f"{where}: grudge names unknown node {victim!r}")
        if not isinstance(sources, list) or not sources:
            raise ConfigError(f"{where}: grudge[{victim}] must be a non-empty list of node names")
        for source in sources:
            if source not in facts.node_names:
                raise ConfigError(f"{where}: grudge[{victim}] names unknown node {source!r}")
            if source == victim:
                raise ConfigError(f"{where}: grudge[{victim}] cannot hold the node itself")
        out.append((str(victim), tuple(str(s) for s in sources)))
    return tuple(out)


def parse_clock(where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> ClockOptions:
    mode = entry.get("mode", "bump")
    if mode not in CLOCK_MODES:
        raise ConfigError(f"{where}: unknown clock mode {mode!r}; modes: {', '.join(CLOCK_MODES)}")
    target = parse_target(where, entry, facts, default="all" if mode == "reset" else "random")
    offset_ms = _number(where, "offset_ms", entry.get("offset_ms", 0.0))
    if abs(offset_ms) > MAX_CLOCK_OFFSET_MS:
        raise ConfigError(
            f"{where}: offset_ms {offset_ms:g} is out of range (at most ±{MAX_CLOCK_OFFSET_MS:g} "
            "ms, one hour; did you mean seconds?)"
        )
    if mode in ("bump", "strobe") and offset_ms == 0:
        raise ConfigError(f"{where}: mode {mode} needs a non-zero offset_ms")
    if mode in ("strobe", "drift") and steps_system_clock(facts.runtime):
        raise ConfigError(
            f"{where}: clock mode {mode} is not available on the {facts.runtime} runtime: there "
            "the clock nemesis steps each node's own system clock (bump and reset only)"
        )
    period_ms = _number(where, "period_ms", entry.get("period_ms", DEFAULT_CLOCK_PERIOD_MS))
    if period_ms < MIN_CLOCK_PERIOD_MS:
        raise ConfigError(
            f"{where}: period_ms {period_ms:g} is below {MIN_CLOCK_PERIOD_MS:g} ms; the clock "
            "library re-reads the offset every 20 ms, and faster steps would not all reach it"
        )
    rate = _number(where, "rate", entry.get("rate", 1.0))
    if mode == "drift" and not (MIN_CLOCK_RATE <= rate <= MAX_CLOCK_RATE and rate != 1.0):
        raise ConfigError(
            f"{where}: drift rate {rate:g} must be in "
            f"[{MIN_CLOCK_RATE}, {MAX_CLOCK_RATE}] and not 1"
        )
    reset_on_stop = entry.get("reset_on_stop", True)
    if not isinstance(reset_on_stop, bool):
        raise ConfigError(f"{where}: reset_on_stop must be true or false")
    return ClockOptions(
        mode=mode,
        target=target,
        offset_ms=offset_ms,
        period_ms=period_ms,
        rate=rate,
        reset_on_stop=reset_on_stop,
    )


def parse_netem(where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> NetemOptions:
    if not facts.link_proxy:
        _require_distinct_ip_addresses(where, facts)
    links: list[tuple[str, str]] = []
    raw_links = entry.get("links")
    if raw_links is not None:
        if "target" in entry or "count" in entry:
            raise ConfigError(f"{where}: give either links or target, not both")
        if not isinstance(raw_links, list) or not raw_links:
            raise ConfigError(f"{where}: links must be a non-empty list of [node, node] pairs")
        for i, link in enumerate(raw_links):
            if not isinstance(link, list | tuple) or len(link) != 2 or link[0] == link[1]:
                raise ConfigError(f"{where}: links[{i}] must be a pair of two different nodes")
            for name in link:
                if name not in facts.node_names:
                    raise ConfigError(f"{where}: links[{i}] names unknown node {name!r}")
            links.append((str(link[0]), str(link[1])))
    target = parse_target(where, entry, facts, default="all")
    delay_ms = _number(where, "delay_ms", entry.get("delay_ms", 0.0))
    jitter_ms = _number(where, "jitter_ms", entry.get("jitter_ms", 0.0))
    if not 0 <= delay_ms <= MAX_NETEM_DELAY_MS:
        raise ConfigError(f"{where}: delay_ms must be in [0, {MAX_NETEM_DELAY_MS:g}]")
    if not 0 <= jitter_ms <= delay_ms:
        raise ConfigError(f"{where}: jitter_ms must be in [0, delay_ms={delay_ms:g}]")
    loss = _fraction(where, "loss", entry.get("loss", 0.0))
    reorder = _fraction(where, "reorder", entry.get("reorder", 0.0))
    duplicate = _fraction(where, "duplicate", entry.get("duplicate", 0.0))
    if delay_ms == 0 and loss == 0 and duplicate == 0:
        raise ConfigError(
            f"{where}: give delay_ms, loss and/or duplicate, otherwise the network is fine"
        )
    if facts.link_proxy and (reorder or duplicate or loss >= 1.0):
        raise ConfigError(
            f"{where}: the {facts.runtime} runtime's link proxy can delay, jitter and lose "
            "(loss < 1) but not reorder or duplicate; use the netns runtime for those"
        )
    if reorder and delay_ms == 0:
        raise ConfigError(
            f"{where}: reorder sends packets ahead of delayed ones; it needs delay_ms"
        )
    return NetemOptions(
        target=target,
        links=tuple(links),
        delay_ms=delay_ms,
        jitter_ms=jitter_ms,
        loss=loss,
        reorder=reorder,
        duplicate=duplicate,
    )
