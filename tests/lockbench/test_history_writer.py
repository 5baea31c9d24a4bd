"""The history writer writes the format's JSON (``Op.to_json``), field for field and in its order,
whether records come from an event loop (written at the end of its iteration) or from a thread."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from lockbench.history import Op, pair_calls, read_history
from lockbench.history_writer import HistoryWriter

RECORDS: list[tuple[Any, ...]] = [
    (0, "invoke", "acquire", "lock/1", {"timeout": 2.0, "shared": False}, {"node": "n1"}),
    (0, "ok", "acquire", "lock/1", 17, {"node": "n1", "session": "s3", "error": None}),
    (1, "invoke", "res-write", 'we"ird\\key', {"token": 4, "value": "1:2"}, {}),
    (
        1,
        "fail",
        "res-write",
        'we"ird\\key',
        {"accepted": False, "highest": 9},
        {"error": "stale-token"},
    ),
    ("nemesis", "info", "leader", None, {"leader": None, "term": 3}, {}),
    (2, "invoke", "owner", "fr/0", {"node": "n2"}, {"node": "n2"}),
    (2, "info", "owner", "fr/0", None, {"node": "n2", "error": "timeout: no answer in 5s"}),
    (3, "invoke", "cas", "r", [1, 2], {"custom": {"x": [True, None, 1.5]}}),
    (3, "ok", "cas", "r", [1, 2], {"session": "s\u00e9", "error": "late", "node": "n3"}),
]


def write_all(writer: Any) -> None:
    for process, type, f, key, value, optional in RECORDS:
        writer.append(process, type, f, key, value, **optional)


def as_op_json(index: int, record: tuple[Any, ...]) -> dict[str, Any]:
    """The format's own JSON for a record: ``Op.to_json`` (time left out: two clocks)."""
    process, type, f, key, value, optional = record
    fields = dict(optional)
    op = Op(
        index=index,
        time=0,
        process=process,
        type=type,
        f=f,
        key=key,
        value=value,
        node=fields.pop("node", None),
        error=fields.pop("error", None),
        session=fields.pop("session", None),
        extra=fields,
    )
    expected: dict[str, Any] = json.loads(json.dumps(op.to_json(), default=str))
    expected.pop("time")
    return expected


def test_lines_are_the_formats_json_field_for_field(tmp_path: Path) -> None:
    async def main() -> None:
        writer = HistoryWriter(tmp_path / "h.jsonl", start_ns=0)
        write_all(writer)  # collected in this loop iteration ...
        await asyncio.sleep(0)  # ... and written at its end
        assert (tmp_path / "h.jsonl").read_text().count("\n") == len(RECORDS)
        writer.close()

    asyncio.run(main())
    lines = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    for index, (line, record) in enumerate(zip(lines, RECORDS, strict=True)):
        line.pop("time")
        expected = as_op_json(index, record)
        assert line == expected
        assert list(line) == list(expected)  # same field order
    assert len(pair_calls(read_history(tmp_path / "h.jsonl"))) == 4


def test_records_from_a_thread_without_a_loop_are_written_at_once(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    writer.append("nemesis", "invoke", "start-kill", None, {"nodes": ["n1"]})
    assert (tmp_path / "h.jsonl").read_text().count("\n") == 1
    writer.close()
    writer.close()  # idempotent
