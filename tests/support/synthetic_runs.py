"""Synthetic but realistic run directories, for report tests, benchmarks and the sample screenshot.

The report must be tested on runs of every shape (valid, invalid with anomalies, damaged) without
standing up a five-node cluster each time. This module simulates one: clients contending for locks
on a five-node service that grants fencing tokens, under a seeded fault schedule (partitions,
leader kills, pauses, clock skew) that delays operations and causes failovers, and a holder that
stalls past its lease. It writes the store layout of docs/history.md with a history that follows
the format's rules (one op in flight per process, a process retired after ``info``), and a
results.json that states what is true of that history: in ``unfenced`` mode the stalled holder's
late write is accepted while the next holder is inside its critical section (an anomaly); in
``fenced`` mode the resource refuses it (valid).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

RunKind = Literal["valid", "invalid", "damaged"]
NODES: tuple[str, ...] = ("n1", "n2", "n3", "n4", "n5")
NS_PER_S = 1_000_000_000
ACQUIRE_TIMEOUT_S = 2.0
OP_TIMEOUT_S = 1.0
SESSION_TTL_S = 2.0
FAULT_PERIOD_S = 7.0
FAULT_FIRST_S = 2.0
FAULT_CYCLE: tuple[str, ...] = ("partition", "kill", "pause", "clock")
FAULT_LENGTH_S: dict[str, float] = {"partition": 5.0, "kill": 4.0, "pause": 3.0, "clock": 6.0}


@dataclass(frozen=True, slots=True)
class SyntheticRunSpec:
    """What to simulate. ``kind`` picks valid, invalid (unfenced, with anomalies) or damaged."""

    kind: RunKind = "valid"
    seconds: float = 60.0
    concurrency: int = 5
    locks: int = 2
    seed: int = 7
    test_name: str = "mutex-faults"
    started: datetime = field(default_factory=lambda: datetime(2026, 11, 26, 12, 0, 0))
    think_ms: float = 20.0


@dataclass(slots=True)
class _Record:
    time: int
    order: int
    body: dict[str, Any]


@dataclass(slots=True)
class _Simulation:
    """Mutable state of one simulated run; records are sorted by time at the end."""

    spec: SyntheticRunSpec
    rng: random.Random
    records: list[_Record] = field(default_factory=list)
    unavailable: list[tuple[float, float]] = field(default_factory=list)
    slow: list[tuple[float, float]] = field(default_factory=list)
    next_token: int = 100
    counter: int = 0

    def emit(self, t_s: float, body: dict[str, Any]) -> None:
        self.records.append(_Record(int(t_s * NS_PER_S), len(self.records), body))

    def latency(self, t_s: float) -> float:
        base = self.rng.lognormvariate(0.0, 0.45) * 0.0015
        if any(a <= t_s < b for a, b in self.slow):
            base *= 6.0
        return base

    def available_from(self, t_s: float) -> float:
        for a, b in self.unavailable:
            if a <= t_s < b:
                return b
        return t_s


def _fault_schedule(sim: _Simulation) -> list[tuple[str, float, float, str]]:
    """(fault, start, end, target) for each fault window, cycling through FAULT_CYCLE."""
    schedule: list[tuple[str, float, float, str]] = []
    start = FAULT_FIRST_S
    i = 0
    while start + FAULT_LENGTH_S[FAULT_CYCLE[i % len(FAULT_CYCLE)]] < sim.spec.seconds - 1.0:
        fault = FAULT_CYCLE[i % len(FAULT_CYCLE)]
        schedule.append((fault, start, start + FAULT_LENGTH_S[fault], NODES[(i * 2) % 5]))
        start += FAULT_PERIOD_S
        i += 1
    return schedule


def _nemesis(sim: _Simulation, t: float, f: str, value: dict[str, Any]) -> None:
    base = {"process": "nemesis", "f": f, "key": None, "value": value}
    sim.emit(t, {**base, "type": "invoke"})
    sim.emit(t + 0.004, {**base, "type": "info"})


def _simulate_nemesis(sim: _Simulation) -> list[str]:
    """Emit fault and observation records; return nemesis.log lines."""
    log: list[str] = []
    leader, term = "n1", 1
    sim.emit(0.05, _observation("leader", {"leader": leader, "term": term}))
    for fault, start, end, target in _fault_schedule(sim):
        if fault == "partition":
            minority = [leader, NODES[(NODES.index(leader) + 1) % 5]]
            majority = [n for n in NODES if n not in minority]
            grudge = {n: majority for n in minority} | {n: minority for n in majority}
            value: dict[str, Any] = {"shape": "majority-minority", "nodes": list(NODES)}
            value["grudge"] = grudge
            _nemesis(sim, start, "start-partition", value)
            _nemesis(sim, end, "stop-partition", {"healed": list(NODES)})
            gap = 1.2 + sim.rng.random() * 0.8
            sim.unavailable.append((start, start + gap))
            sim.slow.append((start, end))
            sim.emit(start + 0.3, _observation("leader", {"leader": None, "term": term}))
            leader, term = majority[0], term + 1
            sim.emit(start + gap, _observation("leader", {"leader": leader, "term": term}))
            log.append(f"{start:8.3f} start-partition majority-minority {minority} | {majority}")
            log.append(f"{end:8.3f} stop-partition healed")
        elif fault == "kill":
            victim = leader
            _nemesis(sim, start, "start-kill", {"nodes": [victim], "signal": "KILL"})
            _nemesis(sim, end, "stop-kill", {"nodes": [victim], "restarted": True})
            gap = 1.0 + sim.rng.random() * 1.0
            sim.unavailable.append((start, start + gap))
            sim.emit(start + 0.1, _observation("leader", {"leader": None, "term": term}))
            leader = next(n for n in NODES if n != victim and n != target)
            term += 1
            sim.emit(start + gap, _observation("leader", {"leader": leader, "term": term}))
            log.append(f"{start:8.3f} start-kill {victim} (SIGKILL)")
            log.append(f"{end:8.3f} stop-kill restarted {victim}")
        elif fault == "pause":
            victim = target if target != leader else NODES[(NODES.index(target) + 1) % 5]
            _nemesis(sim, start, "start-pause", {"nodes": [victim], "signal": "STOP"})
            _nemesis(sim, end, "stop-pause", {"nodes": [victim], "signal": "CONT"})
            sim.slow.append((start, end))
            log.append(f"{start:8.3f} start-pause {victim} (SIGSTOP)")
            log.append(f"{end:8.3f} stop-pause {victim} (SIGCONT)")
        else:
            skew_ms = sim.rng.choice([-1, 1]) * (150.0 + sim.rng.random() * 350.0)
            _nemesis(sim, start, "start-clock", {"nodes": [target], "offset_ms": round(skew_ms, 1)})
            _nemesis(sim, end, "stop-clock", {"nodes": [target], "offset_ms": 0})
            t = start - 1.0
            while t <= end + 2.0:
                offsets = {n: round(sim.rng.gauss(0.0, 1.5), 2) for n in NODES}
                if start + 0.5 <= t <= end:
                    offsets[target] = round(skew_ms + sim.rng.gauss(0.0, 3.0), 2)
                sim.emit(t, _observation("clock", {"offsets_ms": offsets}))
                t += 1.0
            log.append(f"{start:8.3f} start-clock {target} {skew_ms:+.1f} ms")
            log.append(f"{end:8.3f} stop-clock {target}")
    return log


def _observation(f: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"process": "nemesis", "type": "info", "f": f, "key": None, "value": value}


@dataclass(slots=True)
class _Stall:
    """The injected holder stall: which grant stalls and what happened to its late write."""

    t_from: float
    stalled_process: int | None = None
    stalled_token: int | None = None
    late_write_indices: list[int] = field(default_factory=list)
    late_exit_indices: list[int] = field(default_factory=list)
    late_write_times: tuple[float, float] = (0.0, 0.0)
    late_write_accepted: bool = False
    next_process: int | None = None
    next_token: int | None = None
    next_grant_time: float = 0.0
    next_grant_record: int = -1
    stalled_grant_record: int = -1
    done: bool = False


def _simulate_clients(sim: _Simulation, fenced: bool, stall: _Stall) -> None:  # noqa: PLR0915 - a whole simulated run; its state is locals
    spec = sim.spec
    lock_names = [f"lock-{i}" for i in range(spec.locks)]
    lock_free = dict.fromkeys(lock_names, 0.0)
    highest = dict.fromkeys(lock_names, -1)
    slots = [(sim.rng.random() * 0.05, slot) for slot in range(spec.concurrency)]
    process_of = list(range(spec.concurrency))

    def op(t: float, p: int, typ: str, f: str, key: str | None, value: Any, **more: Any) -> int:
        node = NODES[p % 5]
        sim.emit(t, {"process": p, "type": typ, "f": f, "key": key, "value": value, "node": node})
        sim.records[-1].body.update(more)
        return len(sim.records) - 1

    def resource(t: float, p: int, lock: str, f: str, token: int, value: Any = None) -> float:
        invoke_value: dict[str, Any] = {"token": token}
        if f == "res-write":
            invoke_value["value"] = value
        op(t, p, "invoke", f, lock, invoke_value)
        done = t + sim.latency(t) / 3
        ns = int(done * NS_PER_S) + 17_000
        if fenced and token < highest[lock]:
            refused = {"accepted": False, "resource_time": ns, "highest": highest[lock]}
            op(done, p, "fail", f, lock, refused, error="stale-token")
            return done
        highest[lock] = max(highest[lock], token)
        accepted: dict[str, Any] = {"accepted": True, "resource_time": ns}
        if f == "res-write":
            accepted["value"] = value
        op(done, p, "ok", f, lock, accepted)
        return done

    while slots:
        slots.sort()
        t, slot = slots.pop(0)
        if t >= spec.seconds:
            continue
        p = process_of[slot]
        lock = sim.rng.choice(lock_names)
        op(t, p, "invoke", "acquire", lock, {"timeout": ACQUIRE_TIMEOUT_S, "shared": False})
        ready = sim.available_from(t)
        grant = max(t, lock_free[lock], ready) + sim.latency(t)
        if ready > t + OP_TIMEOUT_S:
            op(t + OP_TIMEOUT_S, p, "info", "acquire", lock, None, error="timeout: no leader")
            process_of[slot] = p + spec.concurrency
            slots.append((t + OP_TIMEOUT_S + 0.01, slot))
            continue
        if grant - t > ACQUIRE_TIMEOUT_S:
            op(t + ACQUIRE_TIMEOUT_S, p, "fail", "acquire", lock, None, error="timeout: queued")
            slots.append((t + ACQUIRE_TIMEOUT_S + sim.rng.expovariate(1000 / spec.think_ms), slot))
            continue
        sim.next_token += 1 + sim.rng.randrange(3)
        token = sim.next_token
        session = f"s{p}"
        grant_record = op(grant, p, "ok", "acquire", lock, token, session=session)
        stalls = not stall.done and stall.stalled_process is None and grant >= stall.t_from
        if (
            not stall.done
            and stall.stalled_process is not None
            and stall.next_process is None
            and lock == lock_names[0]
        ):
            stall.next_process, stall.next_token, stall.next_grant_time = p, token, grant
            stall.next_grant_record = grant_record
            stall.done = True
        if stalls and lock == lock_names[0]:
            stall.stalled_process, stall.stalled_token = p, token
            stall.stalled_grant_record = grant_record
            t_enter = resource(grant + 0.0004, p, lock, "res-enter", token)
            stall_s = SESSION_TTL_S + 0.6
            op(t_enter + 0.0002, p, "invoke", "stall", lock, {"seconds": stall_s})
            resumed = t_enter + 0.0002 + stall_s
            op(resumed, p, "ok", "stall", lock, {"seconds": stall_s})
            lock_free[lock] = t_enter + SESSION_TTL_S + 0.05
            sim.counter += 1
            # The late accesses are decided after the simulation, once the next holder's token
            # is known (the resource compares tokens at the time it receives them).
            t_w = resumed + 0.0003
            write_value = {"token": token, "value": sim.counter}
            stall.late_write_indices = [
                op(t_w, p, "invoke", "res-write", lock, write_value),
                op(t_w + 0.0002, p, "ok", "res-write", lock, None),
            ]
            stall.late_exit_indices = [
                op(t_w + 0.0004, p, "invoke", "res-exit", lock, {"token": token}),
                op(t_w + 0.0006, p, "ok", "res-exit", lock, None),
            ]
            stall.late_write_times = (t_w, t_w + 0.0002)
            t_x = t_w + 0.0006
            op(t_x + 0.0002, p, "invoke", "release", lock, None)
            done = t_x + 0.0002 + sim.latency(t_x)
            op(done, p, "fail", "release", lock, None, error="not-holder: session expired")
            slots.append((done + sim.rng.expovariate(1000 / spec.think_ms), slot))
            continue
        t_enter = resource(grant + 0.0003, p, lock, "res-enter", token)
        sim.counter += 1
        t_write = resource(t_enter + 0.0003, p, lock, "res-write", token, sim.counter)
        t_exit = resource(t_write + 0.0003, p, lock, "res-exit", token)
        op(t_exit + 0.0002, p, "invoke", "release", lock, None)
        release_ready = sim.available_from(t_exit + 0.0002)
        if release_ready > t_exit + 0.0002 + OP_TIMEOUT_S:
            done = t_exit + 0.0002 + OP_TIMEOUT_S
            op(done, p, "info", "release", lock, None, error="timeout: no leader")
            lock_free[lock] = max(lock_free[lock], t_exit + SESSION_TTL_S)
            process_of[slot] = p + spec.concurrency
            slots.append((done + 0.01, slot))
            continue
        done = max(t_exit + 0.0002, release_ready) + sim.latency(t_exit)
        op(done, p, "ok", "release", lock, None)
        lock_free[lock] = max(lock_free[lock], done)
        slots.append((done + sim.rng.expovariate(1000 / spec.think_ms), slot))


def _decide_late_accesses(sim: _Simulation, fenced: bool, stall: _Stall) -> None:
    """Complete the stalled holder's late write and exit as the resource would have."""
    for completion in stall.late_write_indices[1:] + stall.late_exit_indices[1:]:
        record = sim.records[completion]
        ns = record.time + 17_000
        refuse = fenced and stall.next_token is not None
        if refuse:
            record.body.update(type="fail", error="stale-token")
            record.body["value"] = {
                "accepted": False,
                "resource_time": ns,
                "highest": stall.next_token,
            }
        else:
            record.body["value"] = {"accepted": True, "resource_time": ns}
            if record.body["f"] == "res-write":
                record.body["value"]["value"] = sim.records[completion - 1].body["value"]["value"]
    stall.late_write_accepted = not (fenced and stall.next_token is not None)


def _final_records(sim: _Simulation) -> None:
    t = sim.spec.seconds + 0.2
    for i in range(sim.spec.locks):
        lock = f"lock-{i}"
        sim.emit(t, {"process": 0, "type": "invoke", "f": "final-read", "key": lock, "value": None})
        value = {"value": sim.counter, "resource_time": int(t * NS_PER_S) + 40_000}
        sim.emit(
            t + 0.001, {"process": 0, "type": "ok", "f": "final-read", "key": lock, "value": value}
        )
        t += 0.002


def _finish(sim: _Simulation) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Sort by time, number the records; map record order -> history index."""
    ordered = sorted(sim.records, key=lambda r: (r.time, r.order))
    lines: list[dict[str, Any]] = []
    index_of: dict[int, int] = {}
    for i, rec in enumerate(ordered):
        index_of[rec.order] = i
        lines.append({"index": i, "time": rec.time, **rec.body})
    return lines, index_of


def _results(
    sim: _Simulation, lines: list[dict[str, Any]], index_of: dict[int, int], stall: _Stall
) -> dict[str, Any]:
    client = [r for r in lines if r["process"] != "nemesis"]
    grants = sum(1 for r in client if r["f"] == "acquire" and r["type"] == "ok")
    infos = sum(1 for r in client if r["type"] == "info")
    refused = sum(1 for r in client if r.get("error") == "stale-token")
    stats = {"ops": sum(1 for r in client if r["type"] == "invoke"), "grants": grants}
    checkers: dict[str, Any] = {
        "liveness": _checker("liveness", "valid", [], {**stats, "indeterminate": infos}),
        "lost-update": _checker("lost-update", "valid", [], {"final_value": sim.counter}),
    }
    if not stall.late_write_accepted or stall.next_process is None:
        checkers["mutual-exclusion"] = _checker("mutual-exclusion", "valid", [], stats)
        checkers["fencing"] = _checker("fencing", "valid", [], {**stats, "refused": refused})
        checkers["linearizable"] = _checker("linearizable", "valid", [], {"keys": sim.spec.locks})
        return {"verdict": "valid", "checkers": checkers}
    a, b = stall.stalled_process, stall.next_process
    write_inv, write_ok = (index_of[i] for i in stall.late_write_indices)
    stalled_grant = index_of[stall.stalled_grant_record]
    next_grant = index_of[stall.next_grant_record]
    t0 = int(stall.next_grant_time * NS_PER_S)
    t1 = int(stall.late_write_times[1] * NS_PER_S)
    overlap = {
        "kind": "overlapping-critical-sections",
        "explanation": (
            f"Process {a} wrote to the resource guarded by lock-0 with token "
            f"{stall.stalled_token} at {stall.late_write_times[0]:.3f} s, after its session "
            f"expired during a {SESSION_TTL_S + 0.6:.1f} s stall, while process {b} held lock-0 "
            f"with token {stall.next_token} (granted at {stall.next_grant_time:.3f} s); the "
            "resource accepted both, so two clients were in the critical section at once."
        ),
        "op_indices": sorted({stalled_grant, next_grant, write_inv, write_ok}),
        "key": "lock-0",
        "processes": [a, b],
        "time_start": t0,
        "time_end": t1,
    }
    stale = {
        "kind": "stale-token-accepted",
        "explanation": (
            f"The resource accepted token {stall.stalled_token} from process {a} after it had "
            f"accepted the higher token {stall.next_token}: the resource is unfenced, so fencing "
            "tokens did not protect it."
        ),
        "op_indices": [write_inv, write_ok],
        "key": "lock-0",
        "processes": [a],
        "time_start": int(stall.late_write_times[0] * NS_PER_S),
        "time_end": t1,
    }
    nonlin = {
        "kind": "nonlinearizable",
        "explanation": (
            f"No order of the lock-0 operations between op {stalled_grant} and op {write_ok} "
            "agrees with a mutex: process "
            f"{b}'s acquire returned while process {a} still held the lock."
        ),
        "op_indices": [stalled_grant, next_grant, write_ok],
        "key": "lock-0",
        "processes": [a, b],
        "time_start": int(lines[stalled_grant]["time"]),
        "time_end": t1,
    }
    checkers["mutual-exclusion"] = _checker("mutual-exclusion", "invalid", [overlap], stats)
    checkers["fencing"] = _checker("fencing", "invalid", [stale], {**stats, "refused": refused})
    checkers["linearizable"] = _checker(
        "linearizable", "invalid", [nonlin], {"keys": sim.spec.locks}, (stalled_grant, write_ok)
    )
    return {"verdict": "invalid", "checkers": checkers}


def _checker(
    name: str,
    verdict: str,
    anomalies: list[dict[str, Any]],
    stats: dict[str, Any],
    window: tuple[int, int] | None = None,
) -> dict[str, Any]:
    return {
        "checker": name,
        "verdict": verdict,
        "anomalies": anomalies,
        "stats": stats,
        "window": list(window) if window else None,
        "reason": None,
    }


def write_synthetic_run(store: Path, spec: SyntheticRunSpec) -> Path:
    """Simulate a run and write it as ``store/<test>/<timestamp>/``; returns the run directory."""
    sim = _Simulation(spec, random.Random(spec.seed))
    fenced = spec.kind != "invalid"
    stall = _Stall(t_from=min(spec.seconds * 0.45, 30.0))
    nemesis_log = _simulate_nemesis(sim)
    _simulate_clients(sim, fenced, stall)
    if stall.stalled_process is not None:
        _decide_late_accesses(sim, fenced, stall)
    _final_records(sim)
    lines, index_of = _finish(sim)
    run_dir = store / spec.test_name / spec.started.strftime("%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    test = {
        "name": spec.test_name,
        "backend": "reference",
        "runtime": "netns",
        "nodes": list(NODES),
        "workload": {"name": "fenced-counter", "locks": spec.locks, "resource": _mode(fenced)},
        "nemesis": {"faults": list(FAULT_CYCLE), "interval": FAULT_PERIOD_S},
        "concurrency": spec.concurrency,
        "time_limit": spec.seconds,
        "seed": spec.seed,
        "ttl": SESSION_TTL_S,
        "started": spec.started.isoformat(),
    }
    (run_dir / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    if spec.kind == "damaged":
        cut = int(len(text) * 0.7)
        text = text[:cut] + "\n{not json at all\n" + text[cut : cut + 200]
    (run_dir / "history.jsonl").write_text(text, encoding="utf-8")
    if spec.kind != "damaged":
        results = _results(sim, lines, index_of, stall)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (run_dir / "nemesis.log").write_text("\n".join(nemesis_log) + "\n", encoding="utf-8")
    (run_dir / "bench.log").write_text(
        f"{spec.started.isoformat()} INFO bench.runner: test {spec.test_name} seed {spec.seed}\n"
        f"{spec.started.isoformat()} INFO bench.runner: {len(lines)} history records\n",
        encoding="utf-8",
    )
    for node in NODES if spec.kind != "damaged" else NODES[:3]:
        node_dir = run_dir / "nodes" / node
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "lockd.log").write_text(
            f"lockd {node} started; peers {','.join(n for n in NODES if n != node)}\n",
            encoding="utf-8",
        )
    latest = store / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.relative_to(store))
    return run_dir


def _mode(fenced: bool) -> str:
    return "fenced" if fenced else "unfenced"
