"""Read a history for checking, from lockbench JSON Lines or a Jepsen/Knossos EDN file, and
validate it: every problem is a HistoryError naming the file and the line.

Validation is what the checkers rely on: completions pair with invocations of the same op, and
every client op is one the history format defines.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from bench.checker.edn import EdnError, Keyword, Symbol, read_forms, to_json
from lockbench.history import (
    NEMESIS,
    OP_TYPES,
    Call,
    HistoryError,
    Op,
    PairedHistory,
    Process,
    iter_numbered_ops,
)

# Client operations defined by docs/history.md.
CLIENT_OPS = frozenset(
    {
        "acquire",
        "release",
        "owner",
        "read",
        "write",
        "cas",
        "watch",
        "stall",
        "res-enter",
        "res-read",
        "res-write",
        "res-exit",
        "final-read",
        "lease-lost",
    }
)


def load_history(path: Path) -> list[Op]:
    """Read and validate ``path`` (``.edn`` or content starting with ``{:``/``[{`` is EDN)."""
    return list(load_paired_history(path).ops)


def load_paired_history(path: Path) -> PairedHistory:
    """Read, validate and pair ``path`` (``.edn`` or content starting with ``{:``/``[{`` is EDN).

    JSON Lines are decoded from the file line by line, straight into ops
    (``lockbench.history.iter_numbered_ops``); a torn last line is left out."""
    source = str(path)
    lines: Sequence[int]
    try:
        with path.open("rb") as fh:
            if path.suffix == ".edn" or _starts_like_edn(fh):
                ops, lines = _read_edn(fh.read().decode("utf-8"), source)
            else:
                ops, lines = _read_jsonl(fh, source)
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(source, 0, f"cannot read the history: {exc}") from exc
    return PairedHistory(ops, validate(ops, lines, source))


def is_edn(path: Path) -> bool:
    """Whether ``path`` is read as EDN (its suffix, or content opening an EDN map or vector)."""
    if path.suffix == ".edn":
        return True
    with path.open("rb") as fh:
        return _starts_like_edn(fh)


def _starts_like_edn(fh: BinaryIO) -> bool:
    """Whether the first non-blank bytes open an EDN map or vector; leaves the file at 0."""
    head = fh.read(4096).lstrip()
    fh.seek(0)
    return head.startswith((b"{:", b"[{", b"#jepsen"))


def _read_jsonl(lines: Iterable[bytes], source: str) -> tuple[list[Op], Sequence[int]]:
    ops: list[Op] = []
    numbers = array("q")  # 8 bytes a line, for naming lines in validation errors
    for number, op in iter_numbered_ops(lines, source):
        ops.append(op)
        numbers.append(number)
    return ops, numbers


def _read_edn(text: str, source: str) -> tuple[list[Op], Sequence[int]]:
    try:
        forms = list(read_forms(text))
    except EdnError as exc:
        raise HistoryError(source, exc.line, exc.reason) from exc
    if len(forms) == 1 and isinstance(forms[0][1], tuple):
        # Knossos-style: one vector of op maps. Ops get the vector's line (maps carry none).
        line = forms[0][0]
        forms = [(line, item) for item in forms[0][1]]
    ops: list[Op] = []
    lines: list[int] = []
    for position, (line, form) in enumerate(forms):
        if not isinstance(form, dict):
            raise HistoryError(source, line, f"expected an op map, got {to_json(form)!r}")
        ops.append(_edn_op(form, position, line, source))
        lines.append(line)
    return ops, lines


def _edn_op(form: Mapping[Any, Any], position: int, line: int, source: str) -> Op:
    fields = {str(k.name if isinstance(k, Keyword | Symbol) else k): v for k, v in form.items()}
    typ = to_json(fields.get("type"))
    if typ not in OP_TYPES:
        raise HistoryError(source, line, f":type must be :invoke/:ok/:fail/:info, got {typ!r}")
    f = to_json(fields.get("f"))
    if not isinstance(f, str) or not f:
        raise HistoryError(source, line, f":f must be a keyword, got {f!r}")
    raw_process = fields.get("process")
    process: Process
    if isinstance(raw_process, int) and not isinstance(raw_process, bool):
        process = raw_process
    elif isinstance(raw_process, Keyword | Symbol | str):
        name = to_json(raw_process)
        process = NEMESIS if name == "nemesis" else name
    else:
        raise HistoryError(
            source, line, f":process must be an integer or :nemesis, got {raw_process!r}"
        )
    time = fields.get("time", position)
    if not isinstance(time, int) or isinstance(time, bool):
        raise HistoryError(source, line, f":time must be integer nanoseconds, got {time!r}")
    key = to_json(fields.get("key"))
    error = fields.get("error")
    return Op(
        index=position,
        time=time,
        process=process,
        type=typ,
        f=f,
        key=None if key is None else str(key),
        value=to_json(fields.get("value")),
        node=None if fields.get("node") is None else str(to_json(fields["node"])),
        error=None if error is None else str(to_json(error)),
    )


def validate(ops: Sequence[Op], lines: Sequence[int], source: str) -> list[Call]:
    """Known client ops; each completion pairs with a pending invocation of the same op.

    Returns the client calls, paired as ``pair_calls`` pairs them (validating is pairing, so
    the checkers get this pass's result instead of a second one)."""
    validator = CallValidator(source)
    calls: list[Call | None] = []
    slot: dict[Process, int] = {}
    for op, line in zip(ops, lines, strict=True):
        process = op.process
        if not isinstance(process, int):
            continue  # nemesis records
        invoked = validator.add(op, line)
        if invoked is None:
            slot[process] = len(calls)
            calls.append(None)
        else:
            calls[slot.pop(process)] = Call(invoked, op)
    for process, invoked_op in validator.pending.items():
        calls[slot[process]] = Call(invoked_op, None)
    return calls  # type: ignore[return-value]  # every slot is filled


class CallValidator:
    """The validation of client records one at a time, in history order (``validate`` for a
    history in memory, bench/checker/partition.py for one streamed from disk)."""

    __slots__ = ("pending", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.pending: dict[Process, Op] = {}  # each process's invocation in flight

    def add(self, op: Op, line: int) -> Op | None:
        """Check a client record; a completion's invocation is returned (None for an invoke).
        Raises HistoryError naming ``line`` for an unknown op or a completion that pairs with
        no invocation of the same op."""
        process = op.process
        if op.f not in CLIENT_OPS:
            raise HistoryError(
                self.source,
                line,
                f"unknown op {op.f!r}; known ops: {', '.join(sorted(CLIENT_OPS))}",
            )
        pending = self.pending
        if op.type == "invoke":
            if process in pending:
                raise HistoryError(
                    self.source,
                    line,
                    f"process {process} invoked {op.f} while its {pending[process].f} "
                    "is still pending",
                )
            pending[process] = op
            return None
        invoked = pending.pop(process, None)
        if invoked is None:
            raise HistoryError(
                self.source, line, f"{op.type} of {op.f} by process {process} without an invocation"
            )
        if invoked.f != op.f:
            raise HistoryError(
                self.source,
                line,
                f"{op.type} of {op.f} by process {process} completes an invocation of {invoked.f}",
            )
        return invoked
