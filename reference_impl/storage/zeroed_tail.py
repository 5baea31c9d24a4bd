"""Zero-filled space ahead of the WAL's end, kept there by a background thread.

Appending to a file changes its size, so each batch's fdatasync must also commit the new size
through the filesystem's journal (on ext4 a jbd2 commit, shared by every writer on the disk).
Writing into blocks that are already allocated and written (zeros) changes no metadata, so the
fdatasync writes the data and nothing else: with five writers on this machine's disk
(benchmarks/wal_fsync.py) p50 fell from 207-229 us to 150-154 us, p99 from 411-466 us to
300-332 us (docs/performance.md). etcd preallocates its WAL segments for the same reason.
fallocate alone does less: its unwritten extents are converted on the first write, a metadata
change again (p50 160-162 us, p99 378-403 us in the same runs).

The log's end is then not the file's end: ``scan_records`` stops at a zero header when every
byte after it is zero (the clean end) and reports anything else there as a torn tail to cut.

Only the filler writes zeros, and only at or beyond the zeroed end (which only grows while the
same file is attached); the WAL writer (``write``) writes below it without a lock, and takes the
lock only for a batch that would cross it, so the two never write the same bytes.
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

PIECE = 1 << 20
"""Zeros written per locked step: a writer that crosses ``zeroed_end`` waits at most this long."""


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class ZeroedTail:
    """Keeps ``target`` bytes of zeros ahead of the WAL's data end, refilling below ``low``."""

    def __init__(
        self, name: str, *, target: int = 4 << 20, low: int = 1 << 20, sync: bool = True
    ) -> None:
        if not 0 <= low <= target:
            raise ValueError(f"need 0 <= low <= target, got low={low} target={target}")
        self._name = name
        self._target = target
        self._low = low
        self._sync = sync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._generation = 0
        self._data_end = 0
        self._zeroed_end = 0
        self._wanted = threading.Event()
        self._stopping = False
        self._failed = False
        self._thread: threading.Thread | None = None

    def attach(self, fd: int, data_end: int, zeroed_end: int) -> None:
        """Serve a (new) WAL file: records end at ``data_end``, zeros run to ``zeroed_end``.
        The caller holds no write in flight (a WAL rewrite runs with the writer drained)."""
        with self._lock:
            self._generation += 1
            self._fd = fd
            self._data_end = data_end
            self._zeroed_end = max(data_end, zeroed_end)
        self._wrote(data_end)
        if self._thread is None and self._target > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"{self._name}-zeros", daemon=True
            )
            self._thread.start()

    def detach(self) -> None:
        """Stop writing into the attached file (before it is closed or replaced)."""
        with self._lock:
            self._generation += 1
            self._fd = None

    def _wrote(self, data_end: int) -> None:
        """The WAL's records now end at ``data_end``: refill if the zeros run low."""
        self._data_end = data_end
        if self._zeroed_end - data_end < self._low and not self._failed:
            self._wanted.set()

    def write(self, fd: int, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset`` of the attached file (the WAL writer's only way
        in). Below ``zeroed_end`` without the lock; a batch that crosses it takes the lock so
        the filler never zeroes bytes this wrote."""
        end = offset + len(data)
        if end <= self._zeroed_end:
            pwrite_all(fd, data, offset)
        else:
            with self._lock:
                pwrite_all(fd, data, offset)
                self._zeroed_end = max(self._zeroed_end, end)
        self._wrote(end)

    def stop(self) -> None:
        self.detach()
        self._stopping = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._stopping = False

    def _run(self) -> None:
        zeros = memoryview(bytes(PIECE))
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._fill(zeros)
            except OSError as error:  # e.g. a full disk: the WAL still appends, only slower
                self._failed = True
                logger.warning(
                    "%s: could not zero-fill ahead of the WAL (%s); appending instead, each "
                    "fsync then also commits the file's new size",
                    self._name,
                    error,
                )

    def _fill(self, zeros: memoryview) -> None:
        filled_fd: int | None = None
        while not self._stopping:
            with self._lock:
                fd, generation = self._fd, self._generation
                if fd is None:
                    break
                start = max(self._zeroed_end, self._data_end)
                goal = self._data_end + self._target
                if start >= goal:
                    break
                size = min(PIECE, goal - start)
                written = os.pwrite(fd, zeros[:size], start)
                self._zeroed_end = start + written
                filled_fd = fd
        if filled_fd is not None and self._sync:
            # Outside the lock (the WAL writer keeps writing meanwhile). If the file was
            # replaced in between, this syncs whatever the number now names: harmless.
            try:
                os.fdatasync(filled_fd)
            except OSError:
                with self._lock:
                    if self._generation == generation:
                        raise
