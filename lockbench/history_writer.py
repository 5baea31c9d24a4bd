"""The history writer: the one way the history.jsonl format is written (docs/history.md).

Its own module beside ``lockbench.history`` (the reader and the format) because it needs asyncio,
which ``lockbench check`` never loads. Written for the runner's client path, which costs ~16 us of
CPU per op on the memory backend: an ``Op`` object, ``json.dumps`` and a flushed text-file write
for every line (what the bench's first writer did) would halve the bench's throughput. So:

- Records are collected during one iteration of the event loop and written together at its end
  (``loop.call_soon``), in index order, with one ``os.write`` of whole lines. Records appended
  from a thread without a loop (the nemesis's blocking work, other tools) are written at once.
- A bench killed with SIGKILL therefore loses at most the records of its last loop iteration,
  and what is in the file is always a prefix of the history in index order. Every prefix of a
  history is a history the checkers can judge: an op whose completion is cut off reads as
  pending (unknown), and an op whose invoke is cut off has no record after it that could have
  observed its effect. So the prefix stays valid and a verdict on it stays sound.
- Lines are formatted directly: the fixed fields with an f-string, names (f, key, node, session)
  through a small cache of their JSON forms, and only the value and other fields through one
  reusable JSON encoder. There is no ``Op`` object and no dict per line. The output is
  ``Op.to_json``'s JSON, field for field and in its order (tests/lockbench/test_history_writer.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from lockbench.history import OpType, Process

_encode = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode
_TYPES = {t: _encode(t) for t in ("invoke", "ok", "fail", "info")}
_OPTIONAL_FIELDS = frozenset({"node", "error", "session"})
# JSON forms of the strings that repeat (op names, keys, nodes, sessions); emptied when full so a
# run with very many sessions cannot grow it without bound.
_NAME_CACHE_LIMIT = 10_000
_names: dict[str, str] = {}


def _name(text: str) -> str:
    encoded = _names.get(text)
    if encoded is None:
        if len(_names) >= _NAME_CACHE_LIMIT:
            _names.clear()
        encoded = _names[text] = _encode(text)
    return encoded


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if value.__class__ is int:
        return str(value)
    return _encode(value)


def format_record(
    index: int,
    time_ns: int,
    process: Process,
    type: OpType,
    f: str,
    key: str | None,
    value: Any,
    optional: dict[str, Any],
) -> str:
    """One history line (without the newline), as ``Op.to_json`` would give it."""
    who = str(process) if process.__class__ is int else _encode(process)
    line = (
        f'{{"index":{index},"time":{time_ns},"process":{who},"type":{_TYPES[type]},'
        f'"f":{_name(f)},"key":{"null" if key is None else _name(key)},"value":{_value(value)}'
    )
    node, error, session = optional.get("node"), optional.get("error"), optional.get("session")
    if node is not None:
        line += f',"node":{_name(node) if isinstance(node, str) else _value(node)}'
    if error is not None:
        line += f',"error":{_value(error)}'
    if session is not None:
        line += f',"session":{_name(session) if isinstance(session, str) else _value(session)}'
    for field, extra in optional.items():
        if extra is not None and field not in _OPTIONAL_FIELDS:
            line += f",{_encode(field)}:{_value(extra)}"
    return line + "}"


class HistoryWriter:
    """Appends history records; thread-safe (the nemesis records from worker threads).

    Indices and times are assigned here, so they increase in file order. In an event loop the
    records of one iteration are written together at its end; from a thread without a loop each
    record is written at once. ``close`` (or leaving a ``with`` block) writes what is pending
    and fsyncs."""

    def __init__(self, path: Path, *, start_ns: int | None = None) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self._next_index = 0
        self._pending: list[str] = []
        self._flush_scheduled = False
        self.start_ns = time.monotonic_ns() if start_ns is None else start_ns
        self.lines = 0

    def now(self) -> int:
        """Nanoseconds since the test started, on the monotonic clock."""
        return time.monotonic_ns() - self.start_ns

    def append(
        self,
        process: Process,
        type: OpType,
        f: str,
        key: str | None = None,
        value: Any = None,
        **optional: Any,
    ) -> None:
        with self._lock:
            line = format_record(
                self._next_index,
                time.monotonic_ns() - self.start_ns,
                process,
                type,
                f,
                key,
                value,
                optional,
            )
            self._next_index += 1
            self._pending.append(line)
            if not self._flush_scheduled:
                self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # appended from a thread without a loop: write now
            self._write_pending()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = ("\n".join(self._pending) + "\n").encode()
        self.lines += len(self._pending)
        self._pending.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def flush(self) -> None:
        """Write the collected completions now."""
        with self._lock:
            self._flush_scheduled = False
            self._write_pending()

    def close(self) -> None:
        """Write what is pending, fsync and close (idempotent)."""
        with self._lock:
            if self._fd < 0:
                return
            self._write_pending()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
