"""Histories larger than memory: one streaming pass that validates the history and copies each
key's records to disk, then the keys checked a group at a time (docs/checkers.md).

An hour at 5,000 ops/s is ~36 million records, ~10 GiB as ops in memory. Most checkers judge
each key on its own (P-compositionality for linearizability; fencing and mutual exclusion are
per lock), so the pass copies every client record, as the line it was read from, to a bucket file
chosen by its call's key, and keeps what a key group needs to know about the rest of the history
(``lockbench.history.WholeHistory``). A group is read back with the ordinary reader and checked
like a small history; memory is then bounded by the largest group (``max_group_records``), not by
the history's length. A key with more records than that is not loaded at all: the per-key
checkers say ``unknown`` for it, with the reason. Checkers that need the whole history in order
(availability, stats, fault reach) take it record by record during the pass instead
(``lockbench.checks.StreamingChecker``).

Records the pass cannot copy exactly are never guessed at: a history that is not valid raises
the same HistoryError, for the same line, that the in-memory reader raises.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.checker.loading import CallValidator, load_paired_history
from lockbench.checks import (
    Anomaly,
    CheckResult,
    HistoryAccumulator,
    KeyedChecker,
    combine_verdicts,
)
from lockbench.history import (
    NEMESIS,
    Call,
    HistoryError,
    Op,
    PairedHistory,
    WholeHistory,
    iter_numbered_lines,
)
from lockbench.options import CheckOptions

# A group of keys read back into memory holds at most this many records (~280 bytes each as
# ops and calls: ~540 MiB, plus the search); a key with more is reported, not loaded.
MAX_GROUP_RECORDS = 2_000_000
# Bucket files the pass writes (keys are spread over them by a hash of the key); a bucket over
# ``max_group_records`` is split again by key.
BUCKETS = 64
# Each bucket file's write buffer.
BUCKET_BUFFER_BYTES = 256 * 1024
# Processes that check key groups side by side (two cores are the machine this was sized on).
WORKERS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
# Records handed to the accumulators at a time.
BATCH = 4096
# Integers kept in memory before a spilled column goes to disk (8 bytes each).
SPILL_CHUNK = 1 << 20
# Ops that end a session's hold or say it may have ended (bench/checker/operations.py).
_EXPIRY_OPS = frozenset({"stall", "lease-lost"})


class SpilledInts:
    """A column of integers appended one at a time and read back as a sequence, kept on disk
    past ``SPILL_CHUNK`` of them (read back through a memory map: the pages are the file's)."""

    __slots__ = ("_chunk", "_count", "_file")

    def __init__(self) -> None:
        self._chunk = array("q")
        self._file: IO[bytes] | None = None
        self._count = 0

    def append(self, value: int) -> None:
        chunk = self._chunk
        chunk.append(value)
        if len(chunk) >= SPILL_CHUNK:
            self._spill()

    def extend(self, values: Iterable[int]) -> None:
        chunk = self._chunk
        chunk.extend(values)
        if len(chunk) >= SPILL_CHUNK:
            self._spill()

    def _spill(self) -> None:
        if self._file is None:
            import tempfile  # lazily: ~20 ms of start-up, needed only for long histories

            self._file = tempfile.TemporaryFile(prefix="lockbench-column-")  # noqa: SIM115 - kept
        self._chunk.tofile(self._file)
        self._count += len(self._chunk)
        self._chunk = array("q")

    def values(self) -> Sequence[int]:
        """Every value appended, in order (further appends are not seen)."""
        if self._file is None:
            return self._chunk
        if self._chunk:
            self._spill()
        self._file.flush()
        import mmap  # lazily, as tempfile

        mapped = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return memoryview(mapped).cast("q")


class ColumnTimes:
    """``lockbench.history.RecordTimes`` over the client records' indices and running maximum
    of times in file order (which is index order for every history the runner writes; otherwise
    the columns are sorted by index in memory first, as ``operations._Timeline`` does)."""

    __slots__ = ("indices", "reached")

    def __init__(self, indices: Sequence[int], times: Sequence[int], in_order: bool) -> None:
        """``times``: the running maximum when ``in_order``, else the records' own times."""
        if not in_order:
            pairs = sorted(zip(indices, times, strict=True))
            indices = [index for index, _ in pairs]
            times = [time for _, time in pairs]
        self.indices = indices
        self.reached: Sequence[int] = times if in_order else list(itertools.accumulate(times, max))

    def first_at_or_after(self, time: int | None, *, limit: int) -> int:
        if time is None:
            return limit
        at = bisect.bisect_left(self.reached, time)
        return min(self.indices[at], limit) if at < len(self.indices) else limit


@dataclass(frozen=True, slots=True)
class KeyGroup:
    """Keys whose records are read back and checked together (``path``: their records, in
    history order), or one key too large to load (``path`` None)."""

    keys: tuple[str | None, ...]
    records: int
    path: Path | None


@dataclass(slots=True)
class PartitionedHistory:
    """A history validated in one pass and split by key on disk."""

    source: str
    whole: WholeHistory
    nemesis_ops: list[Op]
    groups: list[KeyGroup]
    max_group_records: int
    records: int

    def paired_groups(self) -> Iterator[tuple[KeyGroup, PairedHistory | None]]:
        """Each group read back and paired (None for a key too large to load), one at a time."""
        for group in self.groups:
            yield group, self._paired(group)

    def _paired(self, group: KeyGroup) -> PairedHistory | None:
        if group.path is None:
            return None
        part = load_paired_history(group.path)
        return PairedHistory(part.ops, part.calls, whole=self.whole)

    def check_groups(
        self, checkers: Mapping[str, KeyedChecker], options: CheckOptions, *, workers: int = 1
    ) -> dict[str, list[CheckResult]]:
        """Each checker's result on each group, in group order (on an empty history if there
        are no client records). With ``workers`` > 1 the groups are checked in that many
        forked processes, each group on its own: the groups are independent, and a long
        history is mostly these checks. Forking is done only from a single-threaded process
        (``lockbench check``); elsewhere the groups are checked here, one after another."""
        results: dict[str, list[CheckResult]] = {name: [] for name in checkers}
        if not self.groups:
            empty = PairedHistory([], [], whole=self.whole)
            for name, checker in checkers.items():
                results[name].append(checker.check(empty, options))
            return results
        if workers > 1 and len(self.groups) > 1 and threading.active_count() == 1:
            import multiprocessing  # lazily: only long histories need it (start-up time)

            global _forked_work  # what the forked workers inherit
            _forked_work = (self, checkers, options)
            try:
                context = multiprocessing.get_context("fork")
                with context.Pool(min(workers, len(self.groups))) as pool:
                    per_group = list(pool.imap(_check_forked_group, range(len(self.groups))))
            finally:
                _forked_work = None
        else:
            per_group = [self._check_group(group, checkers, options) for group in self.groups]
        for group_results in per_group:
            for name, result in group_results.items():
                results[name].append(result)
        return results

    def _check_group(
        self, group: KeyGroup, checkers: Mapping[str, KeyedChecker], options: CheckOptions
    ) -> dict[str, CheckResult]:
        history = self._paired(group)
        if history is None:
            return {name: self.too_large(name, group) for name in checkers}
        return {name: checker.check(history, options) for name, checker in checkers.items()}

    def too_large(self, checker: str, group: KeyGroup) -> CheckResult:
        """The ``unknown`` a per-key checker gives for a key too large to load."""
        (key,) = group.keys
        reason = (
            f"key {key!r} has {group.records:,} records, more than the {self.max_group_records:,} "
            f"a key may hold in memory when a history this large ({self.records:,} records) is "
            "checked a key at a time; check a shorter history"
        )
        return CheckResult(checker, "unknown", stats={"keys": 1}, reason=reason)


def _bucket(key: str | None, buckets: int) -> int:
    return 0 if key is None else zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets


# A router hands back records as the lines they were read from, not as ops: an Op is not
# picklable, and the parent decodes the few it needs again.
_Line = bytes


@dataclass(slots=True)
class _Routes:
    """What routing learnt that the key groups need besides their records: each key's record
    count, the sample of kinds and sessions (``WholeHistory.sample_ops``), the calls session
    expiries are made of, and the first validation error (source, line, reason), if any."""

    key_records: dict[str | None, int]
    sample: list[_Line]
    expiry_calls: list[tuple[int, _Line, _Line | None]]  # (call number, invoke, completion)
    invalid: tuple[str, int, str] | None


@dataclass(slots=True)
class _Router:
    """Validates the client records one at a time and copies each to its key's bucket file;
    keeps at most one record per kind and session, and the calls session expiries are made of.
    Runs in its own process beside the streaming checkers when it can (``partition_history``)."""

    source: str
    workdir: Path
    bucket_count: int
    validator: CallValidator = field(init=False)
    buckets: list[IO[bytes] | None] = field(default_factory=list)
    writers: list[Callable[[bytes], object] | None] = field(default_factory=list)
    key_records: dict[str | None, int] = field(default_factory=dict)
    bucket_of: dict[str | None, int] = field(default_factory=dict)
    sample: list[_Line] = field(default_factory=list)
    seen: set[Any] = field(default_factory=set)
    tokens_seen: bool = False
    expiry_calls: list[tuple[int, _Line, _Line | None]] = field(default_factory=list)
    # each process's call in flight: (its number in invocation order, its bucket, its line)
    invocations: dict[Any, tuple[int, int, _Line]] = field(default_factory=dict)
    next_call: int = 0
    invalid: HistoryError | None = None

    def __post_init__(self) -> None:
        self.validator = CallValidator(self.source)
        self.buckets = [None] * self.bucket_count
        self.writers = [None] * self.bucket_count

    def route_all(self, lines: Iterator[tuple[int, bytes, Op]]) -> None:
        """Every client record of ``lines`` (a line that cannot be read ends the routing: the
        streaming side reads the same line and reports it)."""
        route = self.route
        try:
            for number, raw, op in lines:
                if type(op.process) is int:  # is_client, inlined: this loop runs per record
                    route(number, raw, op)
        except HistoryError:
            pass

    def route(self, number: int, raw: bytes, op: Op) -> None:
        """One client record; the first that is not valid is kept, and routing stops there
        (the in-memory reader reads every line before it validates: a line that cannot be read
        later in the file is the error it reports, so the error is raised only at the end)."""
        if self.invalid is not None:
            return
        try:
            self._route(number, raw, op)
        except HistoryError as exc:
            self.invalid = exc

    def _route(self, number: int, raw: bytes, op: Op) -> None:
        invoked = self.validator.add(op, number)
        if invoked is None:
            key = op.key
            bucket = self.bucket_of.get(key)
            if bucket is None:
                bucket = self.bucket_of[key] = _bucket(key, self.bucket_count)
            self.invocations[op.process] = (self.next_call, bucket, raw)
            self.next_call += 1
        else:
            seq, bucket, invoke_line = self.invocations.pop(op.process)
            key = invoked.key
            if op.type == "info" or op.f in _EXPIRY_OPS:
                self.expiry_calls.append((seq, invoke_line, raw))
        records = self.key_records
        records[key] = records.get(key, 0) + 1
        write = self.writers[bucket]
        if write is None:
            write = self._open(bucket)
        write(raw if raw.endswith(b"\n") else raw + b"\n")
        kind = (op.f, op.type)
        if kind not in self.seen or op.session is not None or not self.tokens_seen:
            self._remember(op, kind, raw)

    def _open(self, bucket: int) -> Callable[[bytes], object]:
        out = self.buckets[bucket] = bucket_path(self.workdir, bucket).open(
            "wb", buffering=BUCKET_BUFFER_BYTES
        )
        write = self.writers[bucket] = out.write
        return write

    def _remember(self, op: Op, kind: tuple[str, str], line: _Line) -> None:
        """Keep ``op`` in the sample if it is the first of its (kind, type) or session, or the
        first ok acquire with an integer value (see WholeHistory)."""
        seen = self.seen
        wanted = kind not in seen
        if wanted:
            seen.add(kind)
        session = op.session
        if session is not None and ("session", session) not in seen:
            seen.add(("session", session))
            wanted = True
        if (
            not self.tokens_seen
            and op.f == "acquire"
            and op.type == "ok"
            and isinstance(op.value, int)
        ):
            self.tokens_seen = wanted = True
        if wanted:
            self.sample.append(line)

    def finish(self) -> _Routes:
        """Close the bucket files; what the groups need, with the calls still in flight."""
        for out in self.buckets:
            if out is not None:
                out.close()
        expiry_calls = list(self.expiry_calls)
        if self.invalid is None:
            for process in self.validator.pending:
                seq, _, invoke_line = self.invocations[process]
                expiry_calls.append((seq, invoke_line, None))
        expiry_calls.sort(key=lambda item: item[0])
        invalid = self.invalid
        return _Routes(
            self.key_records,
            self.sample,
            expiry_calls,
            None if invalid is None else (invalid.source, invalid.line, invalid.reason),
        )


def bucket_path(workdir: Path, bucket: int) -> Path:
    return workdir / f"bucket-{bucket:03d}.jsonl"


@dataclass(slots=True)
class _Stream:
    """What the streaming pass keeps of every record: the streaming checkers' accumulators,
    the nemesis records, and the columns of client record times (on disk)."""

    accumulators: Sequence[HistoryAccumulator]
    indices: SpilledInts = field(default_factory=SpilledInts)
    reached_times: SpilledInts = field(default_factory=SpilledInts)  # running maximum
    times: SpilledInts = field(default_factory=SpilledInts)  # for a file out of index order
    in_order: bool = True
    reached: int = -(1 << 63)
    last_index: int = -1
    nemesis_ops: list[Op] = field(default_factory=list)
    last: Op | None = None
    records: int = 0

    def run(
        self,
        lines: Iterator[tuple[int, bytes, Op]],
        route: Callable[[int, bytes, Op], None] | None = None,
    ) -> None:
        """Every record of ``lines``; each client record also to ``route`` when given (the
        router in this process)."""
        batch: list[Op] = []
        for number, raw, op in lines:
            batch.append(op)
            if type(op.process) is not int:  # is_client, inlined: this loop runs per record
                self.nemesis_ops.append(op)
            elif route is not None:
                route(number, raw, op)
            if len(batch) >= BATCH:
                self._feed(batch)
                batch = []
        self._feed(batch)

    def _feed(self, batch: list[Op]) -> None:
        """A batch of records to the accumulators, and its client records' times."""
        if not batch:
            return
        self.records += len(batch)
        self.last = batch[-1]
        for accumulator in self.accumulators:
            accumulator.add(batch)
        client = [op for op in batch if type(op.process) is int]
        if not client:
            return
        indices = [op.index for op in client]
        if self.in_order and (
            indices[0] <= self.last_index or any(b <= a for a, b in itertools.pairwise(indices))
        ):
            self.in_order = False
        self.last_index = indices[-1]
        self.indices.extend(indices)
        reached = list(itertools.accumulate((op.time for op in client), max, initial=self.reached))
        self.reached = reached[-1]
        self.reached_times.extend(reached[1:])
        self.times.extend(op.time for op in client)

    def record_times(self) -> ColumnTimes:
        """lease-lost ``since`` needs all client records' times (on disk: read only if needed)."""
        times = self.reached_times if self.in_order else self.times
        return ColumnTimes(self.indices.values(), times.values(), self.in_order)


def _groups(
    workdir: Path, key_records: dict[str | None, int], bucket_count: int, max_group_records: int
) -> list[KeyGroup]:
    by_bucket: dict[int, list[str | None]] = {}
    for key in key_records:
        by_bucket.setdefault(_bucket(key, bucket_count), []).append(key)
    groups: list[KeyGroup] = []
    for bucket, keys in sorted(by_bucket.items()):
        path = bucket_path(workdir, bucket)
        total = sum(key_records[key] for key in keys)
        if total <= max_group_records:
            groups.append(KeyGroup(tuple(keys), total, path))
        else:
            groups.extend(_split_bucket(path, keys, key_records, max_group_records))
    return groups


def _split_bucket(
    path: Path, keys: Sequence[str | None], counts: dict[str | None, int], max_records: int
) -> list[KeyGroup]:
    """A bucket too large for one group, split by key: keys packed into groups of at most
    ``max_records`` records in first-seen order, and each key larger than that on its own,
    unloaded."""
    groups: list[tuple[list[str | None], int]] = []
    oversized: list[KeyGroup] = []
    target: dict[str | None, int] = {}
    for key in keys:
        if counts[key] > max_records:
            oversized.append(KeyGroup((key,), counts[key], None))
            continue
        if not groups or groups[-1][1] + counts[key] > max_records:
            groups.append(([], 0))
        members, total = groups[-1]
        members.append(key)
        groups[-1] = (members, total + counts[key])
        target[key] = len(groups) - 1
    outputs = [
        path.with_name(f"{path.stem}-{number}.jsonl").open("wb", buffering=BUCKET_BUFFER_BYTES)
        for number in range(len(groups))
    ]
    pending: dict[Any, str | None] = {}  # process -> key of its call in flight
    with path.open("rb") as source:
        for _, raw, op in iter_numbered_lines(source, str(path)):
            if op.type == "invoke":
                key = pending[op.process] = op.key
            else:
                key = pending.pop(op.process)
            number = target.get(key)
            if number is not None:
                outputs[number].write(raw if raw.endswith(b"\n") else raw + b"\n")
    for out in outputs:
        out.close()
    path.unlink()
    split = [
        KeyGroup(tuple(members), total, path.with_name(f"{path.stem}-{number}.jsonl"))
        for number, (members, total) in enumerate(groups)
    ]
    return split + oversized


def partition_history(
    path: Path,
    workdir: Path,
    accumulators: Sequence[HistoryAccumulator] = (),
    *,
    max_group_records: int = MAX_GROUP_RECORDS,
    buckets: int = BUCKETS,
    fork_router: bool = False,
) -> PartitionedHistory:
    """Read ``path`` (JSON Lines) once: validate it, feed every record to ``accumulators`` and
    copy each client record to ``workdir`` by its call's key. Raises HistoryError as
    ``load_paired_history`` does (a torn last line is left out).

    With ``fork_router`` (and only in a single-threaded process), the validation and copying
    run in a forked process that reads the file beside this one, so the pass uses two cores:
    each side decodes every line, and the pass takes the longer side's time instead of both."""
    source = str(path)
    stream = _Stream(accumulators)
    router = _Router(source, workdir, buckets)
    try:
        if fork_router and threading.active_count() == 1:
            routes = _route_beside(router, path, stream)
        else:
            with path.open("rb") as fh:
                stream.run(iter_numbered_lines(fh, source), router.route)
            routes = router.finish()
    except OSError as exc:
        raise HistoryError(source, 0, f"cannot read the history: {exc}") from exc
    if routes.invalid is not None:
        raise HistoryError(*routes.invalid)
    last = stream.last
    whole = WholeHistory(
        end_index=0 if last is None else last.index,
        end_time=0 if last is None else last.time,
        sample_ops=tuple(_decoded(routes.sample, source)),
        expiry_calls=tuple(_expiry_calls(routes.expiry_calls, source)),
        record_times=stream.record_times(),
    )
    return PartitionedHistory(
        source,
        whole,
        stream.nemesis_ops,
        _groups(workdir, routes.key_records, buckets, max_group_records),
        max_group_records,
        stream.records,
    )


def _decoded(lines: Sequence[bytes], source: str) -> list[Op]:
    """Lines the pass has read once already, decoded again (so they are known to be valid)."""
    return [op for _, _, op in iter_numbered_lines(lines, source)]


def _expiry_calls(calls: Sequence[tuple[int, bytes, bytes | None]], source: str) -> list[Call]:
    invokes = _decoded([invoke for _, invoke, _ in calls], source)
    completed = iter(_decoded([done for _, _, done in calls if done is not None], source))
    return [
        Call(invoke, None if done is None else next(completed))
        for invoke, (_, _, done) in zip(invokes, calls, strict=True)
    ]


def _route_beside(router: _Router, path: Path, stream: _Stream) -> _Routes:
    """The router in a forked process reading ``path`` while this one streams it: a pool of one,
    as the group workers (``check_groups``), so its result and any error come back through the
    pool and it is stopped if this side fails."""
    import multiprocessing  # lazily: only long histories need it (start-up time)

    global _forked_router  # what the forked router inherits
    _forked_router = router
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            routed = pool.apply_async(_route_in_child, (path,))
            with path.open("rb") as fh:
                stream.run(iter_numbered_lines(fh, router.source))
            routes: _Routes = routed.get()
    finally:
        _forked_router = None
    return routes


# The router a forked process runs: set by _route_beside just before the fork, inherited by it.
_forked_router: _Router | None = None


def _route_in_child(path: Path) -> _Routes:
    router = _forked_router
    assert router is not None
    with path.open("rb") as fh:
        router.route_all(iter_numbered_lines(fh, router.source))
    return router.finish()


# ---------------------------------------------------------------------------------------------
# Merging the groups' results (KeyedChecker.merge)


def merge_results(
    checker: str, results: Sequence[CheckResult], *, max_anomalies: int
) -> CheckResult:
    """The groups' results as one: the combined verdict (invalid, then unknown, then valid), the
    anomalies in group order (at most ``max_anomalies``), the first window, every distinct
    reason, and the stats merged (counts added, ``largest*`` and ``max*`` figures maximised,
    anything else taken from the first group)."""
    if len(results) == 1:
        return results[0]
    verdict = combine_verdicts([r.verdict for r in results])
    anomalies: list[Anomaly] = []
    for result in results:
        anomalies.extend(result.anomalies)
    reasons = [r.reason for r in results if r.reason is not None and r.verdict == verdict]
    window = next((r.window for r in results if r.window and r.verdict == verdict), None)
    stats: dict[str, Any] = {}
    for result in results:
        _merge_stats(stats, result.stats)
    return CheckResult(
        checker,
        verdict,
        anomalies=tuple(anomalies[:max_anomalies]),
        stats=stats,
        window=window,
        reason="; ".join(dict.fromkeys(reasons)) if reasons else None,
    )


def _merge_stats(into: dict[str, Any], stats: Any) -> None:
    for name, value in stats.items():
        if name not in into:
            into[name] = dict(value) if isinstance(value, dict) else value
            continue
        have = into[name]
        if isinstance(have, dict) and isinstance(value, dict):
            _merge_stats(have, value)
        elif isinstance(have, bool) or isinstance(value, bool):
            into[name] = have or value
        elif isinstance(have, int | float) and isinstance(value, int | float):
            combine: Callable[[Any, Any], Any] = (
                max if name.startswith(("largest", "max")) else _add
            )
            into[name] = combine(have, value)


def _add(a: float, b: float) -> float:
    total = a + b
    return round(total, 3) if isinstance(total, float) else total


def nemesis_history(ops: Sequence[Op], whole: WholeHistory) -> PairedHistory:
    """The nemesis records alone, for accumulators that judge only them."""
    return PairedHistory([op for op in ops if op.process == NEMESIS], [], whole=whole)


# What a forked worker checks: set by check_groups just before the fork, inherited by the workers.
_forked_work: tuple[PartitionedHistory, Mapping[str, KeyedChecker], CheckOptions] | None = None


def _check_forked_group(number: int) -> dict[str, CheckResult]:
    assert _forked_work is not None
    part, checkers, options = _forked_work
    return part._check_group(part.groups[number], checkers, options)
