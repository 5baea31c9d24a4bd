"""The leader's storage writes, made in order by one dedicated thread while the event loop serves.

Used with ``leader_writes: background`` (``Replica(async_leader_writes=True)``); by default the
leader writes inline after sending, which costs less CPU here (docs/performance.md, "lockd vs
etcd, third pass") but blocks the loop for each fsync. etcd's asynchronous storage writes in a
Python shell: the leader sends its AppendEntries, hands
its own entries here and goes on with the next requests and acks; the core counts the leader's
log toward the commit only once this writer reports it durable (``RaftNode.persisted``).

One plain thread fed by a ``queue.SimpleQueue`` (C, no Python-level locks) and answering with
``call_soon_threadsafe``: a ``ThreadPoolExecutor`` hand-off measured ~9% of the leader's time in
``submit`` alone. The records are encoded on the loop's thread (``RaftStorage.prepare``); the
writer thread only makes the two system calls, so it hardly ever needs the GIL. What is
submitted while a write runs is queued and goes out as one write after it (the group commit). A
write with entries is fsynced; a commit-index-only one is not (etcd's MustSync).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence

from reference_impl.raft.types import Entry, HardState
from reference_impl.storage.raft_storage import PreparedWrite, RaftStorage, SaveStats

OnWritten = Callable[[Entry | None, SaveStats | None, BaseException | None], None]
"""Called on the event loop after each write: (its last entry, what it wrote, or the error)."""

_Job = tuple[PreparedWrite, bool, Entry | None]  # records, fsync?, last entry


class BackgroundWriter:
    def __init__(self, storage: RaftStorage, on_written: OnWritten, name: str) -> None:
        self._storage = storage
        self._on_written = on_written
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._hard_state: HardState | None = None
        self._entries: list[Entry] = []
        self._queued = False
        self._busy = False
        self._failed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A write is running (or queued behind one)."""
        return self._busy

    def submit(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if self._failed:
            return  # the replica is stopping; nothing more reaches the disk
        if hard_state is not None:
            self._hard_state = hard_state
        self._entries.extend(entries)
        self._queued = True
        if not self._busy:
            self._start()

    async def drain(self) -> None:
        """Wait until everything submitted is written (or a write failed)."""
        await self._idle.wait()

    def close(self, timeout: float | None = None) -> bool:
        """Stop the thread once the queued writes are done (blocks: call after drain). False if
        it is still stuck in a write after ``timeout`` (a hung disk); it is a daemon thread, so
        it does not keep the process alive."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _start(self) -> None:
        entries = self._entries
        try:
            prepared = self._storage.prepare(self._hard_state, entries)
        except Exception as exc:  # e.g. an entry the codec refuses: stop like a failed write
            self._failed = True
            self._on_written(None, None, exc)
            return
        self._hard_state, self._entries, self._queued = None, [], False
        self._busy = True
        self._idle.clear()
        self._jobs.put((prepared, bool(entries), entries[-1] if entries else None))

    def _work(self) -> None:
        """The writer thread: one write at a time, in submission order."""
        while (job := self._jobs.get()) is not None:
            prepared, sync, last = job
            stats: SaveStats | None = None
            error: BaseException | None = None
            try:
                stats = self._storage.write_prepared(prepared, sync=sync)
            except BaseException as exc:  # reported to the loop, which stops the replica
                error = exc
            try:
                self._loop.call_soon_threadsafe(self._done, last, stats, error)
            except RuntimeError:
                return  # the loop is closed: the process is going away

    def _done(
        self, last: Entry | None, stats: SaveStats | None, error: BaseException | None
    ) -> None:
        self._busy = False
        if error is not None:
            self._failed = True
        self._on_written(last, stats, error)
        if error is None and self._queued:
            self._start()
        else:
            self._idle.set()
