"""How long the power-loss filesystem takes to stop: the distribution over many mount/stop cycles.

Each cycle mounts nemesis/lazyfs.py over a fresh directory, writes through it (some files
fsynced, a rename, a directory) and, right after the last write returns, sends SIGUSR1 (power
loss) or SIGTERM (clean stop), alternately, and times the process's exit: the signal then lands
while the filesystem finishes that request and goes back to waiting, where a stop used to be
missed. ``--busy-writer`` keeps a writer going through the stop instead (a stop must win over a
stream of requests; a missed one was hidden there, as the next request woke the wait). A stop
slower than ``--limit`` counts as a hang: the kernel stack of the process is printed (the
evidence), it is killed and its mount detached. Every cycle checks that no mount is left and
that the report names the mode asked for. ``--load N`` runs N CPU-bound processes meanwhile
(bounded, stopped by pid).
``--source`` runs another version of the filesystem, e.g. the one before the fix:

    git show 6c5f3dc:nemesis/lazyfs.py > /tmp/old.py
    sudo .venv/bin/python -m benchmarks.lazyfs_stop --cycles 200 --load 2 --source /tmp/old.py
    sudo .venv/bin/python -m benchmarks.lazyfs_stop --cycles 200 --load 2

Needs root (the filesystem mounts through /dev/fuse).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from nemesis import lazyfs
from tests.support.files import append_file

MODES = {signal.SIGUSR1: "power-loss", signal.SIGTERM: "clean"}
MOUNT_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Cycle:
    seconds: float
    mode: str
    hung: bool
    left_mounted: bool
    reported: str | None


def _mounted(directory: Path) -> bool:
    """Read /proc/self/mounts only: touching the mount point would send the filesystem a
    request, which wakes a process stuck waiting for one and hides the hang being measured."""
    return f" {directory} {lazyfs.FSTYPE} " in Path("/proc/self/mounts").read_text()


def _kernel_stack(pid: int) -> str:
    lines = []
    for name in ("wchan", "stack"):
        with suppress(OSError):
            lines.append(f"{name}: " + Path(f"/proc/{pid}/{name}").read_text().strip())
    return "\n".join(lines)


def _keep_writing(path: Path, stop: threading.Event) -> None:
    """Write and sometimes fsync through one descriptor until the filesystem goes away (the
    descriptor then fails) or ``stop``; opening once keeps the writer out of the plain directory
    that the unmount leaves behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return  # the stop came first
    try:
        count = 0
        while not stop.is_set() and count < 100_000:
            os.write(fd, b"w" * 512)
            if count % 4 == 0:
                os.fsync(fd)
            count += 1
    except OSError:
        pass  # the stop aborted our request: expected
    finally:
        with suppress(OSError):  # closing flushes through the filesystem, which may be gone
            os.close(fd)


def _exercise(directory: Path) -> None:
    for k in range(10):
        append_file(directory / f"f{k}", b"x" * 5000, sync=k % 2 == 1)
    (directory / "sub").mkdir()
    os.replace(directory / "f1", directory / "f2")


def _timed_stop(
    process: subprocess.Popen[bytes], sig: signal.Signals, limit: float, jitter_us: float
) -> float:
    """Seconds from the signal to the exit; a process still there after ``limit`` is killed.
    The signal goes out up to ``jitter_us`` after the last reply, spread over what the
    filesystem does between answering one request and waiting for the next."""
    spin_until = time.perf_counter_ns() + int(random.uniform(0, jitter_us) * 1000)
    while time.perf_counter_ns() < spin_until:
        pass
    started = time.monotonic()
    os.kill(process.pid, sig)
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"  stuck {limit:g} s after {sig.name}:\n{_kernel_stack(process.pid)}", flush=True)
        process.kill()
        process.wait()
    return time.monotonic() - started


def one_cycle(
    source: Path,
    directory: Path,
    sig: signal.Signals,
    limit: float,
    *,
    busy: bool,
    jitter_us: float,
) -> Cycle:
    directory.mkdir()
    log_path = directory.with_suffix(".log")
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(source), str(directory)], stdout=log, stderr=subprocess.STDOUT
        )
    done = threading.Event()
    writer = threading.Thread(target=_keep_writing, args=(directory / "busy", done))
    try:
        deadline = time.monotonic() + MOUNT_WAIT_S
        while not _mounted(directory):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the filesystem did not mount: {log_path.read_text()[-500:]}")
            time.sleep(0.01)
        _exercise(directory)
        if busy:
            writer.start()
            time.sleep(random.uniform(0.0, 0.02))
        seconds = _timed_stop(process, sig, limit, jitter_us)
    finally:  # whatever happened (^C included), nothing of this cycle outlives it
        done.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        if writer.is_alive():
            writer.join(timeout=30)
        left = _mounted(directory)
        if left:
            subprocess.run(["umount", "-l", str(directory)], check=False)
    report_path = Path(str(directory) + lazyfs.REPORT_SUFFIX)
    reported = json.loads(report_path.read_text())["mode"] if report_path.exists() else None
    return Cycle(seconds, MODES[sig], seconds >= limit, left, reported)


@contextmanager
def cpu_load(processes: int, seconds: float) -> Iterator[None]:
    """``processes`` busy loops, each ending by itself after ``seconds``; stopped by pid."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def summarize(cycles: list[Cycle], limit: float) -> str:
    times = sorted(c.seconds for c in cycles)
    hung = sum(c.hung for c in cycles)
    left = sum(c.left_mounted for c in cycles)
    wrong = sum(c.reported != c.mode for c in cycles if not c.hung)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return (
        f"{len(cycles)} stops: median {statistics.median(times):.3f} s, p90 {p90:.3f} s, "
        f"max {times[-1]:.3f} s; over 1 s: {sum(t > 1 for t in times)}; "
        f"hung (> {limit:g} s): {hung}; left mounted: {left}; wrong or missing report: {wrong}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--limit", type=float, default=20.0, help="seconds; slower is a hang")
    parser.add_argument("--load", type=int, default=0, help="CPU-bound processes meanwhile")
    parser.add_argument("--source", type=Path, default=Path(lazyfs.__file__))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jitter-us", type=float, default=50.0, help="signal up to this long after the last reply"
    )
    parser.add_argument(
        "--busy-writer", action="store_true", help="keep a writer going through the stop"
    )
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse: the filesystem mounts through it", file=sys.stderr)
        return 2
    if args.cycles < 1 or args.limit <= 0 or args.load < 0 or args.jitter_us < 0:
        print("--cycles must be >= 1, --limit > 0, --load and --jitter-us >= 0", file=sys.stderr)
        return 2
    if not args.source.is_file():
        print(f"--source {args.source}: no such file", file=sys.stderr)
        return 2
    random.seed(args.seed)
    cycles: list[Cycle] = []
    # the load ends by itself even if this process is killed: every cycle plus every hang
    bound = args.cycles * (args.limit + MOUNT_WAIT_S)
    with (
        tempfile.TemporaryDirectory(prefix="bench-lazyfs-stop-") as tmp,
        cpu_load(args.load, bound),
    ):
        for number in range(args.cycles):
            sig = signal.SIGUSR1 if number % 2 == 0 else signal.SIGTERM
            cycle = one_cycle(
                args.source,
                Path(tmp) / f"d{number}",
                sig,
                args.limit,
                busy=args.busy_writer,
                jitter_us=args.jitter_us,
            )
            cycles.append(cycle)
            print(f"{number + 1:4} {cycle.mode:10} {cycle.seconds:8.3f} s", flush=True)
    print(summarize(cycles, args.limit))
    print(f"source {args.source}; load average at the end: {os.getloadavg()[0]:.1f}")
    failed = any(c.hung or c.left_mounted or c.reported != c.mode for c in cycles)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
