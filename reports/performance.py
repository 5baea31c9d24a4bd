"""What a run cost and how its holders learned they had lost a lock, from its history alone.

``lockbench compare`` puts these figures side by side for every backend; they are computed from
the same runs whose verdicts it shows, so a fast backend that lost mutual exclusion is never
quoted apart from that verdict. Times are the history's (the bench's monotonic clock), so the
figures are the client's view: queueing in the bench is included, as a user's application would
see it.

Lock-loss awareness: a holder whose lock was taken over (another process was granted the lock
while this one had not begun its release) goes on believing it holds the lock until it learns
otherwise: its client records ``lease-lost``, or one of its ops under that grant fails or ends
unknown (a refused write, a release that cannot complete). The figure is the time from the
other's grant to that moment; a ``lease-lost`` record counts from its ``since`` (when the client
knew its lease may have lapsed), not from when the runner wrote it at the holder's next step, so
a holder whose lease lapsed before the other's grant was never unaware (0 s). A holder that never
learned (it released without an error) is counted as unaware until its release began.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from lockbench.history import Call, Op, pair_calls

NS_PER_S = 1e9
NS_PER_MS = 1e6
LEASE_LOST = "lease-lost"
# Client ops that are bookkeeping of the bench, not requests a service served.
NOT_SERVED: frozenset[str] = frozenset({LEASE_LOST, "stall"})


@dataclass(frozen=True, slots=True)
class Takeover:
    """A lock granted to ``taker`` while ``holder`` still believed it held it."""

    lock: str
    holder: int
    taker: int
    granted_at: float  # seconds: the taker's grant (its acquire's completion)
    aware_at: float | None  # seconds: when the holder learned; None if it never did
    believed_until: float  # seconds: aware_at, or the holder's release when it never learned
    how: str  # "lease-lost", "fail <f>", "info <f>", "released unaware", "still holding"

    @property
    def unaware_s(self) -> float:
        """How long the holder went on believing, from the other's grant (0 if it knew first)."""
        return max(0.0, self.believed_until - self.granted_at)


@dataclass(frozen=True, slots=True)
class RunPerformance:
    """One run's figures (None: nothing to measure, e.g. no acquire succeeded)."""

    duration_s: float
    ok_ops: int
    ok_ops_per_s: float
    acquire_p50_ms: float | None
    acquire_p99_ms: float | None
    handoffs: int
    handoffs_per_s: float
    longest_gap_in_fault_s: float | None
    takeovers: tuple[Takeover, ...] = field(default_factory=tuple)

    @property
    def unaware_median_s(self) -> float | None:
        values = [t.unaware_s for t in self.takeovers]
        return median(values) if values else None

    @property
    def unaware_max_s(self) -> float | None:
        values = [t.unaware_s for t in self.takeovers]
        return max(values) if values else None

    @property
    def never_aware(self) -> int:
        return sum(1 for t in self.takeovers if t.aware_at is None)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def fault_windows_s(history: Sequence[Op]) -> list[tuple[float, float]]:
    """(start, stop) in seconds of every fault the nemesis started (to the end if never stopped)."""
    end = max((op.time for op in history), default=0) / NS_PER_S
    open_at: dict[str, list[float]] = defaultdict(list)
    windows: list[tuple[float, float]] = []
    for op in history:
        if op.process != "nemesis" or op.type != "info":
            continue
        value = op.value if isinstance(op.value, dict) else {}
        if "skipped" in value:
            continue
        if op.f.startswith("start-"):
            open_at[op.f.removeprefix("start-")].append(op.time / NS_PER_S)
        elif op.f.startswith("stop-"):
            starts = open_at[op.f.removeprefix("stop-")]
            if starts:
                windows.append((starts.pop(0), op.time / NS_PER_S))
    windows.extend((start, end) for starts in open_at.values() for start in starts)
    return sorted(windows)


def _longest_gap_in_faults(
    ok_times: Sequence[float], windows: Sequence[tuple[float, float]]
) -> float | None:
    """The longest time without an ok op that began inside a fault window (None: no faults)."""
    if not windows:
        return None
    times = sorted(ok_times)
    longest = 0.0
    for start, stop in windows:
        before = [t for t in times if t <= start]
        after = [t for t in times if t > start]
        previous = before[-1] if before else start
        for t in after:
            if previous > stop:
                break
            longest = max(longest, t - max(previous, start))
            previous = t
        else:
            if previous <= stop:
                longest = max(longest, stop - max(previous, start))
    return longest


def _takeovers(calls: Sequence[Call], history: Sequence[Op]) -> list[Takeover]:
    """Every hold of a lock taken over: the first grant of it to another process made before
    the holder began releasing it (later grants during the same stale hold are not counted)."""
    lease_lost: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for op in history:
        if op.f == LEASE_LOST and op.type == "ok" and isinstance(op.process, int) and op.key:
            lease_lost[(op.process, op.key)].append(lease_lost_times(op))
    by_process: dict[int, list[Call]] = defaultdict(list)
    for call in calls:
        if isinstance(call.invoke.process, int):
            by_process[call.invoke.process].append(call)
    # One hold per ok acquire: from its grant to the invoke of its release (or the end).
    holds: dict[str, list[tuple[float, float, int, int]]] = defaultdict(list)
    for process, own in by_process.items():
        for i, call in enumerate(own):
            if call.invoke.f != "acquire" or call.outcome != "ok" or call.completion is None:
                continue
            lock = call.invoke.key or ""
            granted = call.completion.time / NS_PER_S
            until = float("inf")
            for later in own[i + 1 :]:
                if later.invoke.f == "release" and later.invoke.key == lock:
                    until = later.invoke.time / NS_PER_S
                    break
                if later.invoke.f == "acquire" and later.invoke.key == lock:
                    break
            holds[lock].append((granted, until, process, i))
    found: list[Takeover] = []
    for lock, spans in holds.items():
        spans.sort()
        active: list[tuple[float, float, int, int]] = []  # holds not yet released, by grant
        for span in spans:
            granted, _until, taker, _index = span
            active = [held for held in active if held[1] > granted]
            taken = [held for held in active if held[2] != taker]
            # a hold is taken over once, by the first grant to another process
            active = [held for held in active if held[2] == taker]
            for held_from, held_until, holder, index in taken:
                found.append(
                    _awareness(
                        lock,
                        holder,
                        taker,
                        granted,
                        held_from,
                        held_until,
                        by_process[holder][index + 1 :],
                        lease_lost[(holder, lock)],
                    )
                )
            active.append(span)
    return found


def lease_lost_times(op: Op) -> tuple[float, float]:
    """(recorded, since) in seconds of a ``lease-lost`` record: ``since`` is the moment its
    client knew the lease may have lapsed (docs/history.md), which the runner records only at
    the holder's next step; the record's own time where it carries no ``since``."""
    recorded = op.time / NS_PER_S
    since = op.value.get("since") if isinstance(op.value, dict) else None
    if isinstance(since, int) and not isinstance(since, bool) and since <= op.time:
        return recorded, since / NS_PER_S
    return recorded, recorded


def _awareness(
    lock: str,
    holder: int,
    taker: int,
    granted: float,
    held_from: float,
    held_until: float,
    later_calls: Sequence[Call],
    lease_lost_times: Sequence[tuple[float, float]],
) -> Takeover:
    """When the holder learned it had lost ``lock`` (the first sign after its own grant)."""
    signs: list[tuple[float, str]] = [
        (max(since, held_from), LEASE_LOST)
        for recorded, since in lease_lost_times
        if recorded >= held_from
    ]
    for call in later_calls:
        if call.invoke.key != lock or call.invoke.f in NOT_SERVED:
            continue
        if call.invoke.f == "acquire":
            break
        if call.completion is None:
            signs.append((call.invoke.time / NS_PER_S, f"unfinished {call.invoke.f}"))
            break
        if call.completion.type in ("fail", "info"):
            signs.append(
                (call.completion.time / NS_PER_S, f"{call.completion.type} {call.invoke.f}")
            )
            break
        if call.invoke.f == "release":
            break
    if signs:
        aware_at, how = min(signs)
        return Takeover(lock, holder, taker, granted, aware_at, aware_at, how)
    if held_until == float("inf"):
        end = (
            max((c.completion.time if c.completion else c.invoke.time) for c in later_calls)
            if later_calls
            else granted * NS_PER_S
        )
        return Takeover(
            lock, holder, taker, granted, None, max(granted, end / NS_PER_S), "still holding"
        )
    return Takeover(lock, holder, taker, granted, None, held_until, "released unaware")


def run_performance(history: Sequence[Op]) -> RunPerformance:
    """The figures of one run's history (see the module docstring)."""
    calls = [c for c in pair_calls(history) if c.invoke.f not in NOT_SERVED]
    client_ops = [op for op in history if isinstance(op.process, int)]
    if client_ops:
        start = min(op.time for op in client_ops) / NS_PER_S
        end = max(op.time for op in client_ops) / NS_PER_S
    else:
        start = end = 0.0
    duration = max(end - start, 1e-9)
    ok_calls = [c for c in calls if c.outcome == "ok" and c.completion is not None]
    acquire_ms = [
        (c.completion.time - c.invoke.time) / NS_PER_MS
        for c in ok_calls
        if c.invoke.f == "acquire" and c.completion is not None
    ]
    grants = sorted(
        (c.completion.time, c.invoke.key or "", c.invoke.process)
        for c in ok_calls
        if c.invoke.f == "acquire" and c.completion is not None
    )
    last_holder: dict[str, object] = {}
    handoffs = 0
    for _time, lock, process in grants:
        if lock in last_holder and last_holder[lock] != process:
            handoffs += 1
        last_holder[lock] = process
    ok_times = [c.completion.time / NS_PER_S for c in ok_calls if c.completion is not None]
    return RunPerformance(
        duration_s=duration,
        ok_ops=len(ok_calls),
        ok_ops_per_s=len(ok_calls) / duration,
        acquire_p50_ms=percentile(acquire_ms, 0.50),
        acquire_p99_ms=percentile(acquire_ms, 0.99),
        handoffs=handoffs,
        handoffs_per_s=handoffs / duration,
        longest_gap_in_fault_s=_longest_gap_in_faults(ok_times, fault_windows_s(history)),
        takeovers=tuple(_takeovers(pair_calls(history), history)),
    )
