"""The runner's history sink: formatting one record, and 1,000 appends written by the loop's
scheduled flush (the path every client op takes in a run), into a file without fsync (the
writer fsyncs only when it closes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from lockbench.history_writer import HistoryWriter, format_record

RECORDS = 1_000


def test_format_record(benchmark: BenchmarkFixture) -> None:
    line = benchmark(
        format_record, 41, 1_234_567_890, 3, "ok", "acquire", "lock/1", 17, {"session": "s3"}
    )
    assert line.startswith("{")
    assert line.endswith("}")


def test_append_and_flush(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "history.jsonl")
    loop = asyncio.new_event_loop()

    async def append_many() -> None:
        for i in range(RECORDS):
            writer.append(i % 10, "ok", "acquire", f"lock/{i % 3}", i, session=f"s{i % 10}")
        await asyncio.sleep(0)  # the scheduled flush runs

    try:
        benchmark(lambda: loop.run_until_complete(append_many()))
    finally:
        loop.close()
        writer.close()
    written = (tmp_path / "history.jsonl").read_text().count("\n")
    assert written == writer.lines
    assert written % RECORDS == 0
    assert written > 0
