"""The nemesis schedule: when each fault of the test file starts and stops, and the final heal.

Each entry of the ``nemesis:`` list runs on its own timeline (entries compose by running side by
side). Times and choices come from RNGs seeded with ``(seed, entry, purpose)``, so the same seed
replays the same schedule, and fault windows do not shift when, say, a leader answer differs.
Every action is recorded as a nemesis ``invoke``/``info`` pair saying exactly what was done (see
docs/history.md); the runner guarantees ``heal_all`` runs at the end, on Ctrl-C or on a crash.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lockbench.protocols import (
    Backend,
    Cluster,
    ClusterFacts,
    FaultAction,
    Nemesis,
    NemesisSetting,
    state_dir_of,
)
from nemesis.clock import ClockNemesis, record_clocks
from nemesis.fault import HealError, entry_rng
from nemesis.heal import heal_cluster
from nemesis.links import link_faults_of
from nemesis.power import POWER_LOSS_MOUNTS, PowerLossMounts
from nemesis.remote import NodeLocks
from nemesis.spec import (
    ClockOptions,
    ExplicitSchedule,
    IntervalSchedule,
    NemesisSpec,
    PartitionOptions,
    RandomSchedule,
    Schedule,
    parse_specs,
)

log = logging.getLogger(__name__)

Record = Callable[[str, str, Any], None]
# Clock modes whose offsets keep changing while the fault is on.
MOVING: frozenset[str] = frozenset({"strobe", "drift"})
# While a strobe or drift runs, node clocks change without any action: sample them this often
# (each sample is an SSH command per node; the report plots them).
CLOCK_SAMPLE_SECONDS = 3.0
# How long heal_all waits for a fault command already running on a node to finish, so that a
# fault applied after the heal cannot survive it.
INFLIGHT_WAIT_SECONDS = 60.0


def fault_windows(schedule: Schedule, rng: random.Random) -> Iterator[tuple[float, float]]:
    """``(start, stop)`` seconds from the start of the run, in order; endless unless explicit."""
    if isinstance(schedule, ExplicitSchedule):
        yield from schedule.windows
        return
    if isinstance(schedule, IntervalSchedule):
        quiet = schedule.interval - schedule.duration
        cycle = 0
        while True:
            start = cycle * schedule.interval + quiet
            yield start, start + schedule.duration
            cycle += 1
    assert isinstance(schedule, RandomSchedule)
    previous_stop = 0.0
    while True:
        start = previous_stop + rng.uniform(*schedule.gap)
        previous_stop = start + rng.uniform(*schedule.duration)
        yield start, previous_stop


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    index: int
    fault: str
    start: float
    stop: float


def plan(specs: Sequence[NemesisSpec], seed: int, horizon: float) -> list[PlannedWindow]:
    """Every fault window starting before ``horizon`` seconds, as the runner will use them."""
    out: list[PlannedWindow] = []
    for spec in specs:
        for start, stop in fault_windows(spec.schedule, entry_rng(seed, spec.index, "schedule")):
            if start >= horizon:
                break
            out.append(PlannedWindow(spec.index, spec.fault, start, stop))
    return sorted(out, key=lambda w: (w.start, w.index))


class NemesisRunner:
    """Runs the test file's ``nemesis:`` list against a cluster and heals everything at the end."""

    def __init__(
        self,
        specs: Sequence[Mapping[str, Any]],
        cluster: Cluster,
        backend: Backend,
        *,
        seed: int,
        record: Callable[[str, str, Any], None],
    ) -> None:
        self.raw_specs = list(specs)
        self.cluster = cluster
        self.backend = backend
        self.seed = seed
        self.record = record
        self.specs: tuple[NemesisSpec, ...] | None = None
        self.nemeses: dict[int, Nemesis] = {}
        self.locks = NodeLocks()
        self.clock_offsets: dict[str, float] = {}
        self.heal_phases: dict[int, int] = {}
        self.setting: NemesisSetting | None = None
        self._inflight = 0
        self._inflight_changed = threading.Condition()
        self._closed = False

    # -- validation ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Parse the entries against this cluster; raises ConfigError before anything starts."""
        if self.specs is not None:
            return
        nodes = list(self.cluster.nodes)
        facts = ClusterFacts(
            runtime=self.cluster.runtime,
            node_names=tuple(node.name for node in nodes),
            addresses={node.name: node.address for node in nodes},
            capabilities=frozenset(self.cluster.capabilities),
            link_proxy=link_faults_of(self.cluster) is not None,
            backend=self.backend.name,
            backend_state_dir=state_dir_of(self.backend) is not None,
        )
        specs = parse_specs(self.raw_specs, facts)
        setting = NemesisSetting(
            self.cluster, self.backend, self.seed, self.locks, self.clock_offsets
        )
        self.setting = setting
        self.nemeses = {
            spec.index: spec.kind.build(setting, spec.index, spec.options) for spec in specs
        }
        self.heal_phases = {spec.index: spec.kind.heal_phase for spec in specs}
        self.specs = specs

    # -- what the faults need on the nodes, around the service's life -----------------------

    @property
    def power_mounts(self) -> PowerLossMounts | None:
        """The power-loss filesystem under every node's server data, if a fault needs it."""
        if self.setting is None:
            return None
        mounts: PowerLossMounts | None = self.setting.shared.get(POWER_LOSS_MOUNTS)
        return mounts

    def prepare_nodes(self) -> None:
        """After deploying, before the servers start: mount the power-loss filesystem under
        every node's server data when a fault needs it (raises, naming the node, if one cannot).
        """
        self.validate()
        mounts = self.power_mounts
        if mounts is not None:
            mounts.mount_all()

    def release_nodes(self) -> list[str]:
        """After the servers stopped: unmount what ``prepare_nodes`` mounted, keeping the data
        where the backend expects it. Returns one message per problem; never raises."""
        mounts = self.power_mounts
        if mounts is None:
            return []
        try:
            return mounts.unmount_all()
        except Exception as exc:
            return [f"unmounting the power-loss filesystem: {exc}"]

    # -- the schedule --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start and stop faults on each entry's timeline until ``stop`` is set.

        When ``stop`` is set, faults that are on are stopped (and recorded) before this returns.
        Cancelled instead (Ctrl-C), it returns at once; the caller's ``heal_all`` cleans up.
        """
        self.validate()
        assert self.specs is not None
        if any(spec.fault == "clock" for spec in self.specs):
            await asyncio.to_thread(self._record_clocks)
        started = asyncio.get_running_loop().time()
        tasks = [
            asyncio.create_task(self._timeline(spec, started, stop), name=spec.label)
            for spec in self.specs
        ]
        if any(
            isinstance(s.options, ClockOptions) and s.options.mode in MOVING for s in self.specs
        ):
            tasks.append(asyncio.create_task(self._sample_moving_clocks(stop), name="clocks"))
        try:
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await stop.wait()
        finally:
            for task in tasks:
                task.cancel()

    async def _timeline(self, spec: NemesisSpec, started: float, stop: asyncio.Event) -> None:
        windows = fault_windows(spec.schedule, entry_rng(self.seed, spec.index, "schedule"))
        choices = entry_rng(self.seed, spec.index, "targets")
        for start, end in windows:
            if await _wait_until(started + start, stop):
                return
            hold = end - start
            target = await asyncio.to_thread(self._resolve, spec, choices, hold)
            applied = await self._act(spec, f"start-{spec.fault}", target)
            stopped = await _wait_until(started + end, stop)
            if applied:
                await self._act(spec, f"stop-{spec.fault}", None)
            if stopped:
                return

    async def _sample_moving_clocks(self, stop: asyncio.Event) -> None:
        """Record node clocks every few seconds while a strobe or drift driver runs."""
        loop = asyncio.get_running_loop()
        while not await _wait_until(loop.time() + CLOCK_SAMPLE_SECONDS, stop):
            if any(isinstance(n, ClockNemesis) and n.driving for n in self.nemeses.values()):
                await asyncio.to_thread(self._record_clocks)

    def _resolve(self, spec: NemesisSpec, rng: random.Random, hold: float) -> Any:
        """The target of one start, or (a str) the reason there is none (no leader known)."""
        names = [node.name for node in self.cluster.nodes]
        return spec.kind.target(spec.options, names, rng, self._leader, hold)

    def _leader(self) -> str | None:
        try:
            leader = self.backend.leader(self.cluster)
        except Exception as exc:
            log.warning("nemesis: asking the backend for the leader failed: %s", exc)
            leader = None
        self._safe_record("info", "leader", {"leader": leader})
        return leader

    async def _act(self, spec: NemesisSpec, f: str, target: Any) -> bool:
        """Record invoke, apply in a thread, record info. True if the fault may be on now."""
        intent: dict[str, Any] = {"nemesis": spec.index}
        nodes = getattr(target, "nodes", None)
        if nodes is not None:
            intent["nodes"] = list(nodes)
        if isinstance(spec.options, PartitionOptions) and f.startswith("start"):
            intent["shape"] = spec.options.shape
        if nodes is not None and f.startswith("start"):
            # how many of how many: the liveness checker's quorum outages (docs/history.md)
            intent["cluster_size"] = len(self.cluster.nodes)
        self._safe_record("invoke", f, intent)
        if isinstance(target, str):
            self._safe_record("info", f, {**intent, "skipped": target})
            return False
        try:
            action = await asyncio.to_thread(self._apply, spec, f, target)
        except Exception as exc:
            log.warning("nemesis: %s %s failed: %s", spec.label, f, exc)
            self._safe_record("info", f, {**intent, "error": str(exc)})
            return f.startswith("start")
        self._safe_record("info", f, {"nemesis": spec.index, **action.description})
        if spec.fault == "clock":
            await asyncio.to_thread(self._record_clocks)
        return True

    def _apply(self, spec: NemesisSpec, f: str, target: Any) -> FaultAction:
        with self._inflight_changed:
            if self._closed:
                raise RuntimeError("the nemesis is healing; no new faults")
            self._inflight += 1
        try:
            return self.nemeses[spec.index].invoke(f, target)
        finally:
            with self._inflight_changed:
                self._inflight -= 1
                self._inflight_changed.notify_all()

    def _record_clocks(self) -> None:
        try:
            value = record_clocks(self.cluster, self.backend)
        except Exception as exc:
            log.warning("nemesis: measuring node clocks failed: %s", exc)
            return
        if "not_reached" in value:
            missed = ", ".join(value["not_reached"])
            log.warning("nemesis: the clock fault did not reach the server on %s", missed)
        self._safe_record("info", "clock", value)

    def _safe_record(self, type_: str, f: str, value: Any) -> None:
        """A history that can no longer be written must not stop faults from being healed."""
        try:
            self.record(type_, f, value)
        except Exception as exc:
            log.warning("nemesis: could not record %s %s: %s", type_, f, exc)

    # -- healing -------------------------------------------------------------------------------

    def heal_all(self) -> list[str]:
        """Undo every fault (this run's, then a sweep of every node); never raises."""
        errors: list[str] = []
        try:
            with self._inflight_changed:
                self._closed = True
                deadline = time.monotonic() + INFLIGHT_WAIT_SECONDS
                while self._inflight and time.monotonic() < deadline:
                    self._inflight_changed.wait(timeout=max(0.0, deadline - time.monotonic()))
                if self._inflight:
                    errors.append(f"{self._inflight} fault command(s) still running after heal")
            for phase in sorted(set(self.heal_phases.values())):
                group = [(i, n) for i, n in self.nemeses.items() if self.heal_phases[i] == phase]
                if group:
                    with ThreadPoolExecutor(max_workers=len(group)) as pool:
                        for found in pool.map(self._heal_one, group):
                            errors.extend(found)
            started = time.monotonic()
            errors.extend(heal_cluster(self.cluster, self.backend))
            log.info("nemesis: swept every node in %.2f s", time.monotonic() - started)
            if any(nemesis.name == "clock" for nemesis in self.nemeses.values()):
                self.clock_offsets.clear()
                self._record_clocks()
        except Exception as exc:
            errors.append(f"heal_all: {exc}")
        return errors

    def _heal_one(self, item: tuple[int, Nemesis]) -> list[str]:
        index, nemesis = item
        started = time.monotonic()
        try:
            action = nemesis.heal()
        except HealError as exc:
            return exc.errors
        except Exception as exc:
            return [f"nemesis[{index}] ({nemesis.name}): heal failed: {exc}"]
        log.info(
            "nemesis: healed nemesis[%d] (%s) in %.2f s",
            index,
            nemesis.name,
            time.monotonic() - started,
        )
        if action is not None:
            self._safe_record("invoke", action.f, {"nemesis": index, "heal": True})
            self._safe_record(
                "info", action.f, {"nemesis": index, "heal": True, **action.description}
            )
        return []


async def _wait_until(deadline: float, stop: asyncio.Event) -> bool:
    """Sleep until the loop time ``deadline``; True if ``stop`` was set first (or already)."""
    delay = deadline - asyncio.get_running_loop().time()
    if stop.is_set():
        return True
    if delay <= 0:
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True
