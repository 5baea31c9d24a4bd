"""The leader's background writer: writes land in submission order, what queues up behind a
running write goes out as one write, and a failing disk is reported (never swallowed)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from reference_impl.raft.types import Entry, HardState
from reference_impl.server.background_writer import BackgroundWriter
from reference_impl.storage.raft_storage import RaftStorage, SaveStats


def test_writes_land_in_order_and_queued_ones_are_grouped(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path)
    storage.load()
    written: list[tuple[int, int]] = []

    def on_written(
        last: Entry | None, stats: SaveStats | None, error: BaseException | None
    ) -> None:
        assert error is None
        assert stats is not None
        assert last is not None  # every submission here carries entries
        written.append((last.index, stats.records))

    async def scenario() -> None:
        writer = BackgroundWriter(storage, on_written, "wal-test")
        for index in range(1, 101):
            writer.submit(HardState(1, "n1", index - 1), [Entry(1, index, b"x%d" % index)])
        assert writer.busy
        await writer.drain()
        await asyncio.to_thread(writer.close)

    asyncio.run(scenario())
    storage.close()
    assert written[-1][0] == 100
    assert [index for index, _ in written] == sorted(index for index, _ in written)
    assert len(written) < 100, "submissions made while a write ran were grouped"
    assert sum(records for _, records in written) == 100 + len(written)  # entries + hard states
    reloaded = RaftStorage(tmp_path).load()
    assert [e.index for e in reloaded.entries] == list(range(1, 101))
    assert reloaded.hard_state == HardState(1, "n1", 99)


def test_a_failing_write_is_reported_and_nothing_more_is_written(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path)
    storage.load()
    errors: list[BaseException] = []

    def on_written(
        last: Entry | None, stats: SaveStats | None, error: BaseException | None
    ) -> None:
        if error is not None:
            errors.append(error)

    async def scenario() -> None:
        writer = BackgroundWriter(storage, on_written, "wal-test")
        assert storage._fd is not None
        os.close(storage._fd)  # the disk goes away under the writer: EBADF on the next write
        writer.submit(None, [Entry(1, 1, b"lost")])
        await writer.drain()
        writer.submit(None, [Entry(1, 2, b"after")])
        assert not writer.busy, "after a failure nothing more is handed to the disk"
        await asyncio.to_thread(writer.close)

    asyncio.run(scenario())
    storage._fd = None
    assert len(errors) == 1
    assert isinstance(errors[0], OSError)
