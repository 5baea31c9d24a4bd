"""The wall-clock library moves only the wall clock of C, Python and JVM servers, live.

Each server (tests/bench/cluster/clock_servers/) ticks every ~0.1 s, waiting with a different
primitive each tick (sleeps, condition variables, semaphores, select/poll/epoll, futex, asyncio,
the JVM's parks and waits), and prints its monotonic clock and its wall clocks. The test runs it
under the library and moves the offset file through +1 h, -30 min and back to 0 while it runs:
every wall reading must carry the offset of its moment (within 0.1 s; ``time()`` to the second),
and every wait must take its ~0.1 s on the server's own monotonic clock, whatever the skew (a wait
left on the wall clock would take an hour, or return at once). A server that dies (as a Python
server did on its first ``time.sleep`` under libfaketime) fails the test.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lockbench.clock_preload import OFFSET_ENV, build_library, can_build_library

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not can_build_library(), reason="no C compiler (gcc) to build the wall-clock library"
    ),
]

SERVERS = Path(__file__).with_name("clock_servers")
# (offset in seconds, how long it is held): forward an hour, back half an hour, then none.
PHASES: tuple[tuple[float, float], ...] = ((0.0, 1.5), (3600.0, 2.5), (-1800.0, 2.5), (0.0, 1.5))
# A wall reading taken this soon after an offset change may still show the previous offset
# (the library re-reads the file every 20 ms).
SETTLE_S = 0.1
STEP_S = 0.1


@dataclass(frozen=True, slots=True)
class Tick:
    kind: str
    monotonic: float
    walls: tuple[float, ...]


def _write_offset(path: Path, seconds: float) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{seconds:+.6f}\n")
    os.replace(temporary, path)


def _run_through_skews(argv: Sequence[str], tmp_path: Path, startup_s: float) -> list[Tick]:
    """Run the server under the library through PHASES; returns its ticks (it must not die)."""
    offset = tmp_path / "clock.offset"
    _write_offset(offset, 0.0)
    env = {**os.environ, "LD_PRELOAD": str(build_library()), OFFSET_ENV: str(offset)}
    total = sum(seconds for _, seconds in PHASES) + startup_s + 5
    lines: list[str] = []
    first = threading.Event()
    with subprocess.Popen(
        [*argv, f"{total:.1f}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:

        def read() -> None:
            assert server.stdout is not None
            for line in server.stdout:
                lines.append(line)
                first.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert first.wait(startup_s), f"no tick within {startup_s} s"
            # (monotonic time just before and just after the write, offset) of each phase
            changes: list[tuple[float, float, float]] = []
            for seconds, hold in PHASES:
                before = time.monotonic()
                _write_offset(offset, seconds)
                changes.append((before, time.monotonic(), seconds))
                time.sleep(hold)
            ended = time.monotonic()
            assert server.poll() is None, (
                f"server died: {server.stderr.read() if server.stderr else ''}"
            )
        finally:
            server.terminate()
            server.wait(10)
        reader.join(5)
    real_wall_minus_mono = time.time() - time.monotonic()
    ticks = [_parse(line) for line in lines]
    _check(ticks, changes, ended, real_wall_minus_mono)
    return ticks


def _parse(line: str) -> Tick:
    kind, monotonic, *walls = line.split()
    return Tick(kind, float(monotonic), tuple(float(w) for w in walls))


def _check(
    ticks: list[Tick],
    changes: list[tuple[float, float, float]],
    ended: float,
    wall_minus_mono: float,
) -> None:
    """Each phase: from just after its write (+ SETTLE_S) to just before the next write."""
    ends = [before for before, _, _ in changes[1:]] + [ended]
    for (_, start, offset), stop in zip(changes, ends, strict=True):
        held = [t for t in ticks if start + SETTLE_S <= t.monotonic <= stop]
        assert len(held) >= (stop - start) / STEP_S * 0.4, (offset, len(held))
        for tick in held:
            real = tick.monotonic + wall_minus_mono
            for wall in tick.walls:
                tolerance = 1.05 if wall.is_integer() else 0.1  # time() counts whole seconds
                assert abs(wall - real - offset) < tolerance, (offset, tick)
    during = [t for t in ticks if changes[0][0] <= t.monotonic <= ended]
    for before, tick in itertools.pairwise(during):
        took = tick.monotonic - before.monotonic
        assert STEP_S * 0.9 <= took < 2.0, f"{tick.kind} took {took:.3f} s"


def _kinds(ticks: list[Tick]) -> set[str]:
    return {t.kind for t in ticks}


def test_a_c_server_keeps_ticking_and_sees_every_skew(tmp_path: Path) -> None:
    binary = tmp_path / "tick_server"
    source = SERVERS / "tick_server.c"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source), "-lpthread"], check=True)
    ticks = _run_through_skews([str(binary)], tmp_path, startup_s=5)
    assert {
        "clock_nanosleep-monotonic-abs",
        "clock_nanosleep-realtime-abs",
        "pthread_cond_timedwait-monotonic",
        "pthread_cond_timedwait-realtime",
        "sem_timedwait",
        "select",
        "poll",
        "epoll_wait",
        "futex",
        "nanosleep",
    } <= _kinds(ticks)


def test_a_python_server_that_sleeps_keeps_ticking_and_sees_every_skew(tmp_path: Path) -> None:
    ticks = _run_through_skews([sys.executable, str(SERVERS / "tick_server.py")], tmp_path, 10)
    assert {
        "time.sleep",
        "threading.Event.wait",
        "threading.Condition.wait",
        "threading.Lock.acquire",
        "queue.get",
        "select",
        "asyncio.sleep",
    } <= _kinds(ticks)


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK (javac) installed")
def test_a_jvm_server_keeps_ticking_and_sees_every_skew(tmp_path: Path) -> None:
    subprocess.run(["javac", "-d", str(tmp_path), str(SERVERS / "TickServer.java")], check=True)
    ticks = _run_through_skews(["java", "-cp", str(tmp_path), "TickServer"], tmp_path, 30)
    assert {
        "Thread.sleep",
        "Object.wait",
        "LockSupport.parkNanos",
        "BlockingQueue.poll",
        "CountDownLatch.await",
    } <= _kinds(ticks)
