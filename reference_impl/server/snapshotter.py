"""The replica's automatic snapshots, serialised in a forked child so the event loop keeps serving.

Serialising a big state machine (100,000 held locks: ~0.2-1 s of ``json.dumps``) on the event
loop stops heartbeats for longer than an election timeout. A thread does not help: the C JSON
encoder holds the GIL. So, as Redis' BGSAVE: ``fork()`` copies the page tables (4 ms at 140 MiB
RSS here, 8 ms median in loaded lockd nodes; the pages are shared copy-on-write), the child
serialises the state machine as it was at the fork instant and writes it into a pipe, and the
parent goes on serving. It reads the pipe
when the loop says it is readable and learns of the child's exit from a pidfd, so it never waits
for the child and needs no SIGCHLD handler or watcher thread.

The child runs in a process whose other threads (the WAL writer, worker threads) vanished at the
fork, possibly holding locks: it touches nothing but the state machine and its pipe (no logging,
no asyncio), closes every other inherited descriptor (a socket the parent closes must really
close), dies with its parent (PR_SET_PDEATHSIG) and leaves by ``os._exit``. A child that fails or
is killed means no snapshot this time: logged, retried after ``RETRY_SECONDS``.

While a child runs, the parent's cyclic GC leaves the objects that existed at the fork alone
(``gc.freeze()`` until the child is reaped, as Instagram does before forking): a full collection
writes to every object it visits, which would copy every shared page at once, in a pause that is
already the longest one lockd has. An application that freezes objects itself should know that
the snapshotter unfreezes when its child ends.

A state whose last serialisation took under ``IN_PROCESS_MAX_SECONDS`` is snapshotted in process:
then the fork, the pipe and the reaping cost more than they save (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import logging
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from reference_impl.storage.raft_storage import write_all

logger = logging.getLogger(__name__)

IN_PROCESS_MAX_SECONDS = 0.002
"""Serialise in process when the last serialisation took less than this. With a child the loop
still pays 1-1.5 ms for a small state (the fork, reading the pipe, reaping), and the child costs
4-8 ms of CPU (fork, exit) on a machine whose cores the replicas share; in process, 2 ms is 4%
of a 50 ms tick. Measured by benchmarks/snapshots.py (docs/performance.md)."""

CHILD_TIMEOUT_SECONDS = 120.0
"""A child still serialising after this long is killed (a failure like any other): one stuck
(say, on a lock a vanished thread held at the fork) must not hold back snapshots for ever. The
largest snapshot the core accepts (256 MiB) serialises in well under a minute here."""

RETRY_SECONDS = 1.0
"""After a failed child, the next attempt waits this long (a child that keeps failing must not
turn into a fork loop)."""

PIPE_BYTES = 1 << 20
"""The pipe's capacity asked for (Linux' default maximum for unprivileged processes): fewer,
bigger reads on the loop and fewer context switches for the child."""

_HEADER = struct.Struct("<dQ")  # the child's serialisation seconds, the snapshot's length
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031


def _load_prctl() -> Callable[..., int] | None:
    # Looked up in the parent: the child must not call the dynamic loader (its lock may be held
    # by a thread that does not exist there).
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
FORK_AVAILABLE = hasattr(os, "fork") and hasattr(os, "pidfd_open")


class SnapshotInProgress(RuntimeError):
    """``start`` was called while a snapshot is running or waiting (ask ``may_start`` first)."""


@dataclass(frozen=True, slots=True)
class TakenSnapshot:
    """A state machine's snapshot as of ``index`` (the applied index when it was taken)."""

    index: int
    data: bytes
    serialise_seconds: float
    in_child: bool


@dataclass(frozen=True, slots=True)
class _Child:
    pid: int
    pidfd: int
    pipe: int
    index: int
    forked_at: float


class Snapshotter:
    """Takes one snapshot at a time, in process or in a forked child (see the module docstring).

    ``on_result`` is called on the loop when a child's snapshot is ready (``take_result``) or
    the child failed; the replica wakes its raft loop with it, which compacts and persists.
    """

    def __init__(self, name: str, serialise: Callable[[], bytes], on_result: Callable[[], None]):
        self._name = name
        self._serialise = serialise
        self._on_result = on_result
        self._child: _Child | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._chunks: list[bytes] = []
        self._result: TakenSnapshot | None = None
        self._retry_at = 0.0
        self._fork_works = FORK_AVAILABLE
        self.last_serialise_seconds: float | None = None
        """How long the last serialisation took (in the child, as the child measured it)."""
        self.last_fork_seconds: float | None = None
        """How long the last ``fork()`` held the parent's loop."""
        self.children_started = 0
        self.children_failed = 0

    @property
    def child_pid(self) -> int | None:
        """The running child's pid, if a child is serialising."""
        return self._child.pid if self._child else None

    def may_start(self) -> bool:
        """No snapshot in progress or waiting to be taken, and no failure in the last
        ``RETRY_SECONDS``."""
        return self._child is None and self._result is None and time.monotonic() >= self._retry_at

    def start(self, index: int) -> TakenSnapshot | None:
        """Snapshot the state machine as of ``index`` (its applied index now). Returns the
        snapshot when taken in process; None when a child took over (see ``take_result``)."""
        if not self.may_start():
            raise SnapshotInProgress(
                f"{self._name}: a snapshot is running or waiting to be taken; check may_start()"
            )
        last = self.last_serialise_seconds
        if not self._fork_works or (last is not None and last < IN_PROCESS_MAX_SECONDS):
            return self._in_process(index)
        try:
            self._fork(index)
        except OSError as error:
            logger.warning(
                "%s: cannot fork a snapshot child (%s); serialising in process",
                self._name,
                error,
            )
            return self._in_process(index)
        return None

    def take_result(self) -> TakenSnapshot | None:
        """The snapshot a child finished, once (None if none is waiting)."""
        result, self._result = self._result, None
        return result

    def stop(self) -> None:
        """Kill and reap a running child (blocks for the moment the kernel takes to end it)."""
        child = self._child
        if child is None:
            return
        self._close(child)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        logger.info("%s: stopped snapshot child %d", self._name, child.pid)

    # -----------------------------------------------------------------------------------------

    def _in_process(self, index: int) -> TakenSnapshot:
        started = time.perf_counter()
        data = self._serialise()
        self.last_serialise_seconds = time.perf_counter() - started
        return TakenSnapshot(index, data, self.last_serialise_seconds, in_child=False)

    def _fork(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
        parent = os.getpid()
        started = time.perf_counter()
        _freeze_heap()
        try:
            pid = os.fork()
        except OSError:
            _thaw_heap()
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:
            _child_main(write_end, self._serialise, parent)
        self.last_fork_seconds = time.perf_counter() - started
        os.close(write_end)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            self._fork_works = False  # an old kernel: snapshots go back to the loop
            _thaw_heap()
            os.close(read_end)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        os.set_blocking(read_end, False)
        self._child = _Child(pid, pidfd, read_end, index, started)
        self._chunks = []
        self.children_started += 1
        loop.add_reader(read_end, self._read)
        loop.add_reader(pidfd, self._exited)
        self._deadline = loop.call_later(CHILD_TIMEOUT_SECONDS, self._overdue, pid)

    def _overdue(self, pid: int) -> None:
        """The child took too long: kill it; its exit is then handled as a failure."""
        self._deadline = None
        if self._child is not None and self._child.pid == pid:
            logger.warning(
                "%s: snapshot child %d still running after %.0fs; killing it",
                self._name,
                pid,
                CHILD_TIMEOUT_SECONDS,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _read(self) -> None:
        """The pipe is readable: take one chunk (the loop comes back for the next)."""
        child = self._child
        assert child is not None
        try:
            chunk = os.read(child.pipe, PIPE_BYTES)
        except BlockingIOError:
            return
        if chunk:
            self._chunks.append(chunk)
        else:
            asyncio.get_running_loop().remove_reader(child.pipe)  # EOF: the exit comes next

    def _exited(self) -> None:
        """The child ended: read what is left in the pipe, reap it, and judge its output."""
        child = self._child
        assert child is not None
        while True:  # the write end is closed now: reads return data or EOF, never block
            try:
                chunk = os.read(child.pipe, PIPE_BYTES)
            except BlockingIOError:  # pragma: no cover - cannot happen once the writer is gone
                break
            if not chunk:
                break
            self._chunks.append(chunk)
        self._close(child)
        status: int | None = None  # None: reaped by someone else (a waitpid(-1) handler)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(child.pid, 0)  # a zombie already: returns at once
        blob, self._chunks = b"".join(self._chunks), []
        elapsed = time.perf_counter() - child.forked_at
        problem = _check_output(status, blob)
        if problem is not None:
            self.children_failed += 1
            self._retry_at = time.monotonic() + RETRY_SECONDS
            logger.warning(
                "%s: snapshot child %d for index %d failed after %.2fs (%s); no snapshot this "
                "time, retrying in %.0fs",
                self._name,
                child.pid,
                child.index,
                elapsed,
                problem,
                RETRY_SECONDS,
            )
        else:
            seconds, _ = _HEADER.unpack_from(blob)
            self.last_serialise_seconds = seconds
            data = blob[_HEADER.size :]
            self._result = TakenSnapshot(child.index, data, seconds, in_child=True)
        self._on_result()

    def _close(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.pipe)
        loop.remove_reader(child.pidfd)
        os.close(child.pipe)
        os.close(child.pidfd)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._child = None
        _thaw_heap()


_children_alive = 0  # of every Snapshotter in this process (tests run several replicas in one)


def _freeze_heap() -> None:
    """The parent's GC leaves today's objects alone while any child runs (module docstring)."""
    global _children_alive
    gc.freeze()  # also moves objects made since another child's fork: they are shared too
    _children_alive += 1


def _thaw_heap() -> None:
    global _children_alive
    _children_alive -= 1
    if _children_alive == 0:
        gc.unfreeze()


def _check_output(status: int | None, blob: bytes) -> str | None:
    """Why a child's output is not a snapshot, or None when it is one (with its exit status
    unknown, a complete output is trusted: the length is written first, the data after)."""
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    if status is not None and (code := os.waitstatus_to_exitcode(status)) != 0:
        return f"exit status {code}: the state machine's snapshot() raised"
    if len(blob) < _HEADER.size:
        return f"{len(blob)} bytes of output, not even a header"
    _, length = _HEADER.unpack_from(blob)
    if len(blob) - _HEADER.size != length:
        return f"{len(blob) - _HEADER.size} bytes of snapshot, the child announced {length}"
    return None


def _child_main(write_end: int, serialise: Callable[[], bytes], parent: int) -> NoReturn:
    """The forked child: serialise, write to the pipe, leave. Never returns, never raises."""
    status = 1
    try:
        gc.disable()  # a collection would only copy pages (it writes to every object it visits)
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before the death signal was armed
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)  # the parent's handlers need its loop
            signal.set_wakeup_fd(-1)
        os.closerange(3, write_end)
        os.closerange(write_end + 1, _max_fd())
        started = time.perf_counter()
        data = serialise()
        seconds = time.perf_counter() - started
        write_all(write_end, _HEADER.pack(seconds, len(data)))
        write_all(write_end, data)
        status = 0
    except BaseException:  # anything at all: the exit status tells the parent
        status = 1
    finally:
        os._exit(status)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 1 << 20
