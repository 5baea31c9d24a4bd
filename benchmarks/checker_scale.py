"""The checker at scale (issue 18): big histories, many histories, many small searches.

Subcommands (each prints one line per measurement; medians of --repeat):

    python -m benchmarks.checker_scale generate --records 1000000 OUT.jsonl
        stream a valid lock history to a file (nothing held in memory; 36M records work)
    python -m benchmarks.checker_scale big HISTORY.jsonl [--pure] [--baseline PYTHON]
        ``lockbench check HISTORY`` in a fresh process: wall and CPU seconds, peak RSS (the
        child's ru_maxrss), default checkers; --pure also runs it with LOCKBENCH_PURE_PYTHON=1,
        --baseline also with another venv's Python (an earlier commit installed there), in turns
    python -m benchmarks.checker_scale many DIR [--histories 100]
        writes that many small histories into DIR, then ``lockbench check DIR`` in one process:
        total and per-history seconds, and per-history overhead beyond the search
    python -m benchmarks.checker_scale pass HISTORY.jsonl [--repeat 3]
        the partitioned check's streaming pass alone (availability and stats, keys copied to
        buckets), in this process, with the router in line and in a forked process, in turns
    python -m benchmarks.checker_scale small [--histories 400]
        the WGL search per small history (hundreds of ops, 5 clients, register and lock models),
        compiled core and pure Python in one run, and the whole linearizability check per history

Run big cases at ``nice -n 10`` and delete generated files after (they are not kept anywhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from io import StringIO
from pathlib import Path
from typing import IO

from bench.checker import native
from bench.checker.linearizable import check_linearizable, ops_by_key, resolve_model
from bench.checker.partition import partition_history
from bench.checker.wgl import search
from bench.checking import load_checker
from lockbench.checks import StreamingChecker
from lockbench.history import Op, iter_history_lines, read_history
from lockbench.options import CheckOptions

MS = 1_000_000


def generate(
    out: IO[str], records: int, *, locks: int, processes: int, info_rate: float, seed: int
) -> int:
    """Write a valid contended lock history: processes acquire random locks (waiting in FIFO
    order), hold them and release them; an acquire may end ``info`` (its grant took effect, the
    process retires and its session expires a while later, releasing the lock). Every op takes
    effect between its invocation and completion, tokens increase per lock in grant order."""
    rng = random.Random(seed)
    holder: list[int | None] = [None] * locks
    queue: list[deque[int]] = [deque() for _ in range(locks)]
    tokens = [0] * locks
    # per live process: (phase, lock); phases: idle, waiting, granted, holding, releasing
    phase: dict[int, tuple[str, int]] = {p: ("idle", -1) for p in range(processes)}
    expiring: deque[tuple[int, int]] = deque()  # (step at which it expires, lock)
    steps = 0
    next_id = processes
    index = 0
    live = list(range(processes))

    def emit(process: int, typ: str, f: str, lock: int, value: str, session: bool = False) -> None:
        nonlocal index
        extra = f',"session":"s{process}"' if session else ""
        out.write(
            f'{{"index":{index},"time":{index * MS},"process":{process},"type":"{typ}",'
            f'"f":"{f}","key":"lock-{lock}","value":{value}{extra}}}\n'
        )
        index += 1

    def free(lock: int) -> None:
        holder[lock] = None
        if queue[lock]:
            waiter = queue[lock].popleft()
            holder[lock] = waiter
            tokens[lock] += 1
            phase[waiter] = ("granted", lock)

    while index < records:
        steps += 1
        while expiring and expiring[0][0] <= steps:
            free(expiring.popleft()[1])
        slot = rng.randrange(len(live))
        p = live[slot]
        state, lock = phase[p]
        if state == "idle":
            lock = rng.randrange(locks)
            emit(p, "invoke", "acquire", lock, '{"timeout":1.0}')
            if holder[lock] is None:
                holder[lock] = p
                tokens[lock] += 1
                phase[p] = ("granted", lock)
            else:
                queue[lock].append(p)
                phase[p] = ("waiting", lock)
        elif state == "granted":
            if rng.random() < info_rate:
                emit(p, "info", "acquire", lock, "null")
                expiring.append((steps + 200, lock))
                del phase[p]
                live[slot] = next_id
                phase[next_id] = ("idle", -1)
                next_id += 1
            else:
                emit(p, "ok", "acquire", lock, str(tokens[lock]), session=True)
                phase[p] = ("holding", lock)
        elif state == "holding":
            emit(p, "invoke", "release", lock, "null")
            free(lock)
            phase[p] = ("releasing", lock)
        elif state == "releasing":
            emit(p, "ok", "release", lock, "null", session=True)
            phase[p] = ("idle", -1)
    return index


def _child_run(
    argv: list[str], env: dict[str, str], output: Path | None = None
) -> tuple[float, float, float, int]:
    """Run a command; (wall seconds, CPU seconds of it and its children, the peak of the RSS
    of it and its children together in MiB, exit code). The sum is sampled every 0.2 s (a
    partitioned check forks workers: the largest single process is not what the machine holds);
    the largest single process's peak (ru_maxrss) is taken if it is larger."""
    started = time.perf_counter()
    # not from a source tree: ``python -m`` puts the working directory first on the path
    with contextlib.ExitStack() as stack:
        sink = subprocess.DEVNULL if output is None else stack.enter_context(output.open("wb"))
        child = subprocess.Popen(argv, env=env, stdout=sink, cwd="/")
    peak = [0]
    done = threading.Event()
    sampler = threading.Thread(target=_sample_tree_rss, args=(child.pid, peak, done), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    rss = max(usage.ru_maxrss * 1024, peak[0]) / 2**20
    return wall, cpu, rss, os.waitstatus_to_exitcode(status)


def _sample_tree_rss(pid: int, peak: list[int], done: threading.Event) -> None:
    """Keep ``peak[0]`` at the largest RSS (bytes) of ``pid`` and its descendants together."""
    while not done.wait(0.2):
        total, pending = 0, [pid]
        while pending:
            current = pending.pop()
            try:
                with open(f"/proc/{current}/status", encoding="ascii") as fh:
                    total += next(
                        (int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")),
                        0,
                    )
                with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as fh:
                    pending.extend(int(child) for child in fh.read().split())
            except (OSError, ValueError):
                continue  # gone meanwhile
        peak[0] = max(peak[0], total)


def big(
    path: Path,
    repeat: int,
    pure: bool,
    checkers: list[str],
    baseline: Path | None,
    options: list[str] | None = None,
    output: Path | None = None,
) -> None:
    """``lockbench check`` in fresh processes, variants taking turns: this tree, optionally this
    tree without the compiled core, and optionally another install (the Python of a venv with
    an earlier commit installed, for an A/B in one run)."""
    tail = ["-m", "bench.cli", "check", str(path), *(["--checkers", *checkers] if checkers else [])]
    variants: list[tuple[str, list[str], dict[str, str]]] = [
        ("this tree, compiled core", [sys.executable, *tail], {})
    ]
    if pure:
        variants.append(
            ("this tree, pure Python", [sys.executable, *tail], {"LOCKBENCH_PURE_PYTHON": "1"})
        )
    if baseline is not None:
        variants.append((f"baseline {baseline}", [str(baseline), *tail], {}))
    runs: dict[str, list[tuple[float, float, float, int]]] = {label: [] for label, *_ in variants}
    for _ in range(repeat):
        for label, argv, extra in variants:
            runs[label].append(
                _child_run([*argv, *(options or [])], {**os.environ, **extra}, output)
            )
    for label, results in runs.items():
        walls = [r[0] for r in results]
        cpus = [r[1] for r in results]
        rss = [r[2] for r in results]
        print(
            f"big {path.name} ({label}): wall median {statistics.median(walls):.2f} s "
            f"(runs {', '.join(f'{w:.2f}' for w in walls)}), CPU median "
            f"{statistics.median(cpus):.2f} s, peak RSS (all its processes) median "
            f"{statistics.median(rss):.0f} MiB "
            f"(max {max(rss):.0f}), exit codes {[r[3] for r in results]}",
            flush=True,
        )


def _small_histories(count: int) -> list[list[Op]]:
    """Small histories: half register (read/write/cas), half lock, 5 clients, ~400 records."""
    out: list[list[Op]] = []
    for i in range(count):
        path_rng = random.Random(i)
        records = 300 + path_rng.randrange(200)
        out.append(_register_history(records, seed=i) if i % 2 else _lock_history(records, i))
    return out


def _lock_history(records: int, seed: int) -> list[Op]:
    buffer = StringIO()
    generate(buffer, records, locks=1, processes=5, info_rate=0.01, seed=seed)
    return _parse(buffer.getvalue())


def _parse(text: str) -> list[Op]:
    return list(iter_history_lines(text.splitlines(keepends=True)))


def _register_history(records: int, seed: int) -> list[Op]:
    """A valid single-register history: 5 clients, each op takes effect at a random point
    inside its call; values 0-4; reads return the value at that point."""
    rng = random.Random(seed)
    ops: list[Op] = []
    value: object = None
    pending: dict[int, tuple[str, object, bool]] = {}  # process -> (f, arg, applied)
    result: dict[int, object] = {}
    while len(ops) < records or pending:
        p = rng.randrange(5)
        if p not in pending:
            if len(ops) >= records:
                continue
            f = rng.choice(["read", "write", "cas"])
            arg: object = None
            if f == "write":
                arg = rng.randrange(5)
            elif f == "cas":
                arg = [rng.randrange(5), rng.randrange(5)]
            ops.append(Op(len(ops), len(ops), p, "invoke", f, "r", arg))
            pending[p] = (f, arg, False)
            continue
        f, arg, applied = pending[p]
        if not applied:
            if f == "read":
                result[p] = value
            elif f == "write":
                value = arg
            else:
                assert isinstance(arg, list)
                old, new = arg
                result[p] = value == old
                if value == old:
                    value = new
            pending[p] = (f, arg, True)
            continue
        del pending[p]
        if f == "read":
            ops.append(Op(len(ops), len(ops), p, "ok", f, "r", result[p]))
        elif f == "cas" and not result[p]:
            ops.append(Op(len(ops), len(ops), p, "fail", f, "r", arg))
        else:
            ops.append(Op(len(ops), len(ops), p, "ok", f, "r", arg))
    return ops


def small(count: int, repeat: int) -> None:
    histories = _small_histories(count)
    options = CheckOptions()
    prepared = []
    for history in histories:
        model = resolve_model(None, history, options)
        for ops in ops_by_key(history, model).values():
            encoded = native.encode(ops, model, model.interchangeable)
            prepared.append((ops, model, encoded))
    records = statistics.median(len(h) for h in histories)

    def per_history(compiled: bool) -> list[float]:
        times = []
        for ops, model, encoded in prepared:
            started = time.perf_counter()
            outcome = search(
                ops,
                model.step,
                model.initial(),
                None,
                dominance=False,
                interchangeable=model.interchangeable,
                native=encoded if compiled else None,
            )
            times.append(time.perf_counter() - started)
            assert outcome.linearizable
        return times

    for _ in range(repeat):
        compiled = statistics.median(per_history(True)) * 1e3
        python = statistics.median(per_history(False)) * 1e3
        whole = []
        for history in histories:
            started = time.perf_counter()
            assert check_linearizable(history, options).verdict == "valid"
            whole.append(time.perf_counter() - started)
        print(
            f"small: {count} histories (median {records:.0f} records, 5 clients, register and "
            f"lock): WGL search per history median {compiled:.3f} ms compiled, {python:.3f} ms "
            f"pure Python ({python / compiled:.1f}x); whole linearizability check per history "
            f"median {statistics.median(whole) * 1e3:.3f} ms",
            flush=True,
        )


def many(directory: Path, count: int, repeat: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, history in enumerate(_small_histories(count)):
        with (directory / f"h{i:04d}.jsonl").open("w") as fh:
            for op in history:
                fh.write(_line(op))
    lockbench = str(Path(sys.executable).with_name("lockbench"))
    # The search alone, in this process, on the same histories: what the overhead is beyond.
    options = CheckOptions()
    searches: list[float] = []
    for path in sorted(directory.iterdir()):
        history = read_history(path)
        started = time.perf_counter()
        check_linearizable(history, options)  # search and conversion, no reading
        searches.append(time.perf_counter() - started)
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [lockbench, "check", str(directory), "--checkers", "linearizable"],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        lines = out.stdout.splitlines()
        # the first history also imports the checkers: left out of the per-history figures
        per = [float(line.rsplit("(", 1)[1].split()[0]) / 1e3 for line in lines[1:-1]]
        inside = statistics.fmean(searches[1:])
        print(
            f"many: {count} histories in one `lockbench check DIR` (linearizable): wall "
            f"{wall:.2f} s incl. start-up; per history after the first: mean "
            f"{statistics.fmean(per) * 1e3:.2f} ms, median {statistics.median(per) * 1e3:.2f} ms; "
            f"the linearizability check alone in-process (search and conversion): mean "
            f"{inside * 1e3:.2f} ms, median {statistics.median(searches[1:]) * 1e3:.2f} ms; "
            f"overhead beyond it (means) {(statistics.fmean(per) - inside) * 1e3:.2f} ms; "
            f"{lines[-1]}",
            flush=True,
        )


def streaming_pass(history: Path, repeat: int) -> None:
    """``partition_history`` with the router in line and beside (forked), alternating."""
    options = CheckOptions()
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for fork in (False, True):
            checkers = [load_checker(name) for name in ("availability", "stats")]
            accumulators = [
                c.accumulate(options) for c in checkers if isinstance(c, StreamingChecker)
            ]
            with tempfile.TemporaryDirectory() as workdir:
                started = time.perf_counter()
                partition_history(history, Path(workdir), accumulators, fork_router=fork)
                times[fork].append(time.perf_counter() - started)
    inline, forked = (statistics.median(times[fork]) for fork in (False, True))
    print(
        f"pass {history.name}: router in line {inline:.2f} s median "
        f"({', '.join(f'{t:.2f}' for t in times[False])}), forked {forked:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times[True])}): {forked / inline:.2f}x",
        flush=True,
    )


def _line(op: Op) -> str:
    return json.dumps(op.to_json(), separators=(",", ":")) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out", type=Path)
    g.add_argument("--records", type=int, default=1_000_000)
    g.add_argument("--locks", type=int, default=100)
    g.add_argument("--processes", type=int, default=20)
    g.add_argument("--info-rate", type=float, default=0.01)
    g.add_argument("--seed", type=int, default=1)
    b = sub.add_parser("big")
    b.add_argument("history", type=Path)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--pure", action="store_true", help="also with the pure-Python search")
    b.add_argument("--checkers", nargs="*", default=[])
    b.add_argument("--baseline", type=Path, help="also check with this Python (a venv's, A/B)")
    b.add_argument("--time-budget", type=float, help="lockbench check --time-budget S")
    b.add_argument("--output", type=Path, help="keep the (last) check's results JSON here")
    m = sub.add_parser("many")
    m.add_argument("directory", type=Path)
    m.add_argument("--histories", type=int, default=100)
    m.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("pass")
    p.add_argument("history", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("small")
    s.add_argument("--histories", type=int, default=400)
    s.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.what == "generate":
        started = time.perf_counter()
        with args.out.open("w") as out:
            n = generate(
                out,
                args.records,
                locks=args.locks,
                processes=args.processes,
                info_rate=args.info_rate,
                seed=args.seed,
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"generated {n} records in {time.perf_counter() - started:.1f} s ({peak} MiB)")
    elif args.what == "big":
        options = [] if args.time_budget is None else ["--time-budget", str(args.time_budget)]
        big(
            args.history, args.repeat, args.pure, args.checkers, args.baseline, options, args.output
        )
    elif args.what == "many":
        many(args.directory, args.histories, args.repeat)
    elif args.what == "pass":
        streaming_pass(args.history, args.repeat)
    else:
        small(args.histories, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
