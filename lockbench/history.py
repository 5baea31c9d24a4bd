"""The history: the contract between running a test and checking it (see docs/history.md).

A history is a sequence of operations written as JSON Lines, one op per line. Every client
operation appears as an ``invoke`` followed by exactly one completion of the same process:
``ok`` (it happened), ``fail`` (it certainly did not happen) or ``info`` (unknown). Nemesis
actions and cluster observations use the process ``"nemesis"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Protocol, TypeAlias, cast

import msgspec

OpType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
Process: TypeAlias = int | str
OP_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})
NEMESIS: str = "nemesis"
REQUIRED_FIELDS: tuple[str, ...] = ("index", "time", "process", "type", "f")
OPTIONAL_FIELDS: tuple[str, ...] = ("node", "error", "session")


class HistoryError(ValueError):
    """A history line that cannot be read; carries the file and the line number."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


# The JSON name of ``Op.extra`` when a line is decoded straight into an Op: no history line has
# it, so unknown fields make the typed decoder fail and such a line takes the exact path.
_EXTRA_NAME = "lockbench:extra"
# ``extra`` of a record without unknown fields: one shared read-only empty mapping.
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class Op(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One history record. ``extra`` keeps any field this version does not know.

    A msgspec Struct, so a history line decodes straight into it (the annotations are the
    format's rules); ``gc=False`` keeps millions of records out of the cyclic collector (a record
    never refers back to itself).
    """

    index: Annotated[int, msgspec.Meta(ge=0)]
    time: int
    process: Process
    type: OpType
    f: Annotated[str, msgspec.Meta(min_length=1)]
    key: str | None = None
    value: Any = None
    node: str | None = None
    error: str | None = None
    session: str | None = None
    extra: Mapping[str, Any] = msgspec.field(default=NO_EXTRA, name=_EXTRA_NAME)

    @property
    def is_client(self) -> bool:
        return isinstance(self.process, int)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
        }
        if self.node is not None:
            out["node"] = self.node
        if self.error is not None:
            out["error"] = self.error
        if self.session is not None:
            out["session"] = self.session
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Op:
        """Build an op from a decoded line; raises ValueError naming the bad field."""
        for name in REQUIRED_FIELDS:
            if name not in obj:
                raise ValueError(f"missing field {name!r}")
        index, t, process, typ, f = (obj[n] for n in REQUIRED_FIELDS)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"index must be a non-negative integer, got {index!r}")
        if not isinstance(t, int) or isinstance(t, bool):
            raise ValueError(f"time must be integer nanoseconds, got {t!r}")
        if isinstance(process, bool) or not isinstance(process, int | str):
            raise ValueError(f"process must be an integer or 'nemesis', got {process!r}")
        if typ not in OP_TYPES:
            raise ValueError(f"type must be one of invoke/ok/fail/info, got {typ!r}")
        if not isinstance(f, str) or not f:
            raise ValueError(f"f must be a non-empty string, got {f!r}")
        key = obj.get("key")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"key must be a string or null, got {key!r}")
        known = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS) | {"key", "value"}
        extra = {k: v for k, v in obj.items() if k not in known}
        return cls(
            index=index,
            time=t,
            process=process,
            type=typ,
            f=f,
            key=key,
            value=obj.get("value"),
            node=_optional_str(obj, "node"),
            error=_optional_str(obj, "error"),
            session=_optional_str(obj, "session"),
            extra=extra,
        )


def _optional_str(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """Something wrong found while reading leniently (for reports of damaged runs)."""

    line: int
    reason: str


_DECODER = msgspec.json.Decoder(Op)
# Values shared between records: flat maps of at most this many fields, this many distinct ones.
_SHARED_VALUE_FIELDS = 4
_SHARED_VALUES = 4096
_force_setattr = msgspec.structs.force_setattr


def _decode_exact(raw: str | bytes, source: str, number: int) -> Op:
    """The reference decoding (stdlib JSON, then ``Op.from_json``): keeps unknown fields in
    ``extra`` and names what is wrong with a bad line."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise HistoryError(source, number, f"not UTF-8 ({exc.reason})") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(source, number, f"not valid JSON ({exc.msg}); truncated?") from exc
    if not isinstance(obj, dict):
        raise HistoryError(source, number, "a history line must be a JSON object")
    try:
        return Op.from_json(obj)
    except ValueError as exc:
        raise HistoryError(source, number, str(exc)) from exc


class _LineDecoder:
    """Lines straight into Ops with msgspec's typed decoder (~20x the stdlib path per line).

    A line the typed decoder refuses (a bad line, unknown fields to keep in ``extra``, a
    non-string ``node``) takes the exact path, so every line decodes to the same Op, or fails
    with the same message, either way. Repeated strings (op names, keys, sessions) are shared:
    a million records hold a few hundred distinct ones.
    """

    __slots__ = ("_strings", "_values", "share", "source")

    def __init__(self, source: str, *, share: bool = True) -> None:
        self.source = source
        self.share = share  # False for records that are dropped once read
        self._strings: dict[str, str] = {}
        self._values: dict[tuple[Any, ...], dict[str, Any]] = {}

    def decode(self, raw: str | bytes, number: int) -> Op:
        try:
            op = _DECODER.decode(raw)
        except msgspec.DecodeError:
            return _decode_exact(raw, self.source, number)
        if op.extra is not NO_EXTRA:  # the line named the internal field: read it exactly
            return _decode_exact(raw, self.source, number)
        if not self.share:
            return op
        strings = self._strings
        f = op.f
        shared = strings.setdefault(f, f)
        if shared is not f:
            _force_setattr(op, "f", shared)
        key = op.key
        if key is not None:
            shared = strings.setdefault(key, key)
            if shared is not key:
                _force_setattr(op, "key", shared)
        session = op.session
        if session is not None:
            shared = strings.setdefault(session, session)
            if shared is not session:
                _force_setattr(op, "session", shared)
        value = op.value
        if type(value) is dict and len(value) <= _SHARED_VALUE_FIELDS:
            self._share_value(op, value)
        return op

    def _share_value(self, op: Op, value: dict[str, Any]) -> None:
        """One object for equal small flat maps (an acquire's ``{"timeout": 1.0}`` on every
        invocation): records are read-only, so sharing is safe and saves ~200 bytes each."""
        try:
            # types too: 1, 1.0 and true are equal keys but not the same JSON value
            signature = (*value.items(), *map(type, value.values()))
            shared = self._values.get(signature)
        except TypeError:  # a nested list or map: not worth a deeper key
            return
        if shared is None:
            if len(self._values) < _SHARED_VALUES:
                self._values[signature] = value
        elif shared is not value:
            _force_setattr(op, "value", shared)


def _complete(raw: str | bytes) -> bool:
    if isinstance(raw, bytes):
        return raw.endswith(b"\n")
    return raw.endswith("\n")


def iter_numbered_ops(
    lines: Iterable[str | bytes], source: str = "<history>"
) -> Iterator[tuple[int, Op]]:
    """Decode JSON Lines strictly with their line numbers; a bad line raises HistoryError.

    Lines keep their newlines (as a file iterates): a last line without one that does not decode
    is a write cut short (a bench killed with SIGKILL mid-line), so the history is read as the
    prefix before it."""
    for number, _, op in _iter_decoded(lines, source):
        yield number, op


def iter_numbered_lines(
    lines: Iterable[bytes], source: str = "<history>"
) -> Iterator[tuple[int, bytes, Op]]:
    """``iter_numbered_ops`` with each op's line as read (to copy records elsewhere as they
    are, as a history too large for memory is split by key), for ops dropped once read (equal
    strings and values are not shared between them)."""
    return cast(Iterator[tuple[int, bytes, Op]], _iter_decoded(lines, source, share=False))


def _iter_decoded(
    lines: Iterable[str | bytes], source: str, *, share: bool = True
) -> Iterator[tuple[int, str | bytes, Op]]:
    decoder = _LineDecoder(source, share=share)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            op = decoder.decode(raw, number)
        except HistoryError:
            if not _complete(raw):
                return
            raise
        yield number, raw, op


def iter_history_lines(lines: Iterable[str | bytes], source: str = "<history>") -> Iterator[Op]:
    """Decode JSON Lines strictly; the first bad line raises HistoryError with its number."""
    for _, op in iter_numbered_ops(lines, source):
        yield op


def read_history(path: Path) -> list[Op]:
    """Read a whole history strictly (the checker's view); a torn last line is left out."""
    with path.open("rb") as fh:
        return list(iter_history_lines(fh, str(path)))


def read_history_lenient(path: Path) -> tuple[list[Op], list[ReadProblem]]:
    """Read what can be read and list the rest (the report's view of a damaged run)."""
    ops: list[Op] = []
    problems: list[ReadProblem] = []
    decoder = _LineDecoder(str(path))
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                ops.append(decoder.decode(raw, number))
            except HistoryError as exc:
                problems.append(ReadProblem(number, exc.reason))
    return ops, problems


class Call(msgspec.Struct, frozen=True, gc=False):
    """An invocation paired with its completion (None if the history ends first)."""

    invoke: Op
    completion: Op | None

    @property
    def outcome(self) -> OpType | None:
        return None if self.completion is None else self.completion.type

    @property
    def process(self) -> Process:
        return self.invoke.process


class PairingError(ValueError):
    """A completion without an invocation, or an invocation while one is pending."""


def pair_calls(history: Sequence[Op], *, client_only: bool = True) -> list[Call]:
    """Pair each invoke with the next completion of the same process, in history order.

    Raises PairingError naming the op index for a completion with nothing pending or a second
    invoke by a process that has an operation in flight. With ``client_only`` nemesis records
    are skipped (they are invoke/info pairs too, but not operations on the system under test).
    """
    pending: dict[Process, Op] = {}
    calls: list[Call | None] = []
    slot: dict[Process, int] = {}
    for op in history:
        if client_only and not op.is_client:
            continue
        if op.type == "invoke":
            if op.process in pending:
                raise PairingError(
                    f"op {op.index}: process {op.process} invoked {op.f} while op "
                    f"{pending[op.process].index} is still pending"
                )
            pending[op.process] = op
            slot[op.process] = len(calls)
            calls.append(None)
        else:
            inv = pending.pop(op.process, None)
            if inv is None:
                raise PairingError(
                    f"op {op.index}: {op.type} completion of {op.f} by process {op.process} "
                    "without an invocation"
                )
            calls[slot.pop(op.process)] = Call(inv, op)
    for process, inv in pending.items():
        calls[slot[process]] = Call(inv, None)
    return [c for c in calls if c is not None]


def pair_calls_lenient(ops: Sequence[Op]) -> list[Call]:
    """Pairing for damaged histories (reports): completions without an invocation are dropped
    and an invocation superseded by the same process's next one is left unfinished."""
    pending: dict[Process, Op] = {}
    calls: list[Call] = []
    for op in ops:
        if not op.is_client:
            continue
        if op.type == "invoke":
            previous = pending.pop(op.process, None)
            if previous is not None:
                calls.append(Call(previous, None))
            pending[op.process] = op
        else:
            inv = pending.pop(op.process, None)
            if inv is not None:
                calls.append(Call(inv, op))
    calls.extend(Call(inv, None) for inv in pending.values())
    calls.sort(key=lambda c: c.invoke.index)
    return calls


@dataclass(frozen=True, slots=True)
class WholeHistory:
    """What a part of a history needs to know about the whole, when a history too large for
    memory is checked a group of keys at a time (bench/checker/partition.py).

    A per-key checker answers a whole-history question from these instead of its part:
    ``sample_ops`` are, in history order, the first client record of each (op kind, type), the
    first client record of each session and the first ok acquire with an integer value (so the
    op kinds, the kinds that succeeded, the sessions' processes and whether grants carry tokens
    are those of the whole history). ``expiry_calls`` are, in invocation order, every call that
    ended ``info``, never ended, or is a ``stall`` or ``lease-lost`` (what session expiries are
    made of), and ``record_times`` finds where a time falls among all client records.
    """

    end_index: int
    end_time: int
    sample_ops: Sequence[Op]
    expiry_calls: Sequence[Call]
    record_times: RecordTimes
    # results the groups' checks share (derived from the fields above), like PairedHistory.memo
    memo: dict[Any, Any] = field(default_factory=dict, compare=False)


class RecordTimes(Protocol):
    """The client records' times in index order, as a running maximum (a lease-lost record's
    ``since`` becomes the position of the first record at or after that time)."""

    def first_at_or_after(self, time: int | None, *, limit: int) -> int:
        """Index of the first client record whose time (running maximum) is >= ``time``,
        at most ``limit``; ``limit`` if ``time`` is None or never reached."""
        ...


@dataclass(slots=True, eq=False)
class PairedHistory:
    """A history read once and paired once: what every checker receives.

    ``memo`` holds results the checkers of one check share (``linearizable`` and
    ``mutual-exclusion`` search the same lock ops; the second reuses the first's search). It lives
    and dies with this object, so nothing is keyed on object identities. ``whole`` is set when
    this is one group of keys of a larger history (its client calls on those keys only).
    """

    ops: Sequence[Op]
    calls: Sequence[Call]
    memo: dict[Any, Any] = field(default_factory=dict)
    whole: WholeHistory | None = None

    @classmethod
    def of(cls, ops: Sequence[Op]) -> PairedHistory:
        """Pair ``ops``; raises PairingError for a completion without an invocation."""
        return cls(ops, pair_calls(ops))

    @property
    def end_index(self) -> int:
        if self.whole is not None:
            return self.whole.end_index
        return self.ops[-1].index if self.ops else 0

    @property
    def end_time(self) -> int:
        if self.whole is not None:
            return self.whole.end_time
        return self.ops[-1].time if self.ops else 0

    @property
    def whole_sample(self) -> Sequence[Op]:
        """Records answering whole-history questions (op kinds, sessions, tokens): every op, or
        ``whole.sample_ops`` for a group of keys (see WholeHistory)."""
        return self.ops if self.whole is None else self.whole.sample_ops
