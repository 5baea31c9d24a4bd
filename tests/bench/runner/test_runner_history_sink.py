"""The runner's history writer writes what lockbench.history.HistoryWriter writes, line for line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench.runner.history_sink import RunHistoryWriter
from lockbench.history import HistoryWriter, pair_calls, read_history

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


def test_lines_match_the_reference_writer_field_for_field(tmp_path: Path) -> None:
    reference = HistoryWriter(tmp_path / "reference.jsonl", start_ns=0)
    write_all(reference)
    reference.close()

    async def main() -> None:
        ours = RunHistoryWriter(tmp_path / "ours.jsonl", start_ns=0)
        write_all(ours)  # collected in this loop iteration ...
        await asyncio.sleep(0)  # ... and written at its end
        assert (tmp_path / "ours.jsonl").read_text().count("\n") == len(RECORDS)
        ours.close()

    asyncio.run(main())
    theirs = [json.loads(x) for x in (tmp_path / "reference.jsonl").read_text().splitlines()]
    mine = [json.loads(x) for x in (tmp_path / "ours.jsonl").read_text().splitlines()]
    for a, b in zip(theirs, mine, strict=True):
        a.pop("time"), b.pop("time")  # two clocks
        assert a == b
        assert list(a) == list(b)  # same field order
    assert len(pair_calls(read_history(tmp_path / "ours.jsonl"))) == 4


def test_records_from_a_thread_without_a_loop_are_written_at_once(tmp_path: Path) -> None:
    writer = RunHistoryWriter(tmp_path / "h.jsonl")
    writer.append("nemesis", "invoke", "start-kill", None, {"nodes": ["n1"]})
    assert (tmp_path / "h.jsonl").read_text().count("\n") == 1
    writer.close()
    writer.close()  # idempotent
