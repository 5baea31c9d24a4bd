"""A history checked a group of keys at a time (bench/checker/partition.py, too large for
memory) gets the verdicts it gets in memory: the same per checker, on valid and invalid
histories, with crashed holders, lease-lost and stall records across keys, a torn last line and
bad lines; only a key too large to load is ``unknown``, and says so."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.checker.partition import SpilledInts, partition_history
from bench.checking import check_history_file, check_partitioned
from bench.commands.check import default_checkers
from lockbench.checks import CheckResult, Verdict
from lockbench.errors import ConfigError
from lockbench.history import HistoryError, Op
from tests.bench.checker.checker_histories import history
from tests.bench.checker.test_checker_engine_properties import histories
from tests.support.histories import lock_history, register_history

IN_MEMORY = 1 << 62  # partition_above_bytes that keeps every history in memory
Checked = tuple[Verdict, dict[str, CheckResult]]


def _write(path: Path, ops: Sequence[Op], tail: str = "") -> Path:
    with path.open("w") as out:
        for op in ops:
            out.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
        out.write(tail)
    return path


def _names(options: dict[str, Any]) -> Callable[[Sequence[Op]], Sequence[str]]:
    return lambda ops: default_checkers(ops, options)


def _both(
    path: Path, limits: Mapping[str, int] | None = None, options: dict[str, Any] | None = None
) -> tuple[Checked, Checked]:
    """The history checked in memory, and a group of keys at a time within ``limits``."""
    options = options or {}
    memory = check_history_file(path, _names(options), options, partition_above_bytes=IN_MEMORY)
    # in this process (the forked workers are tested on their own, in the process lane)
    parted = check_partitioned(path, _names(options), options, **{"workers": 1, **(limits or {})})
    assert parted is not None
    return memory, parted


def _verdicts(checked: Checked) -> tuple[str, dict[str, str]]:
    verdict, results = checked
    return verdict, {name: result.verdict for name, result in results.items()}


def _without_timings(result: CheckResult) -> dict[str, Any]:
    out = result.to_json()
    for stats in (out["stats"], out["stats"].get("model")):
        if isinstance(stats, dict):
            stats.pop("seconds", None)
    return out


def _tight(path: Path) -> dict[str, int]:
    """Two buckets, and groups no larger than the largest key: buckets are split by key."""
    counts: dict[Any, int] = {}
    pending: dict[Any, Any] = {}
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a torn last line
        op = json.loads(line)
        if op["process"] == "nemesis":
            continue
        key = pending.pop(op["process"]) if op["type"] != "invoke" else op["key"]
        if op["type"] == "invoke":
            pending[op["process"]] = key
        counts[key] = counts.get(key, 0) + 1
    return {"buckets": 2, "max_group_records": max(counts.values(), default=1)}


PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(
    st.data(),
    st.sampled_from(["lock", "register", "cas"]),
    st.integers(1, 4),
    st.booleans(),
)
def test_random_histories_get_the_in_memory_verdicts(
    data: Any, kind: str, keys: int, info_heavy: bool
) -> None:
    ops = data.draw(histories(kind, keys=keys, max_calls=12, info_heavy=info_heavy))
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "h.jsonl", ops)
        memory, parted = _both(path, _tight(path))
    assert _verdicts(parted) == _verdicts(memory)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bug_rate", [0.0, 0.02])
def test_simulated_lock_services_get_the_in_memory_results(
    tmp_path: Path, seed: int, bug_rate: float
) -> None:
    ops = lock_history(seed=seed, ops=3000, locks=6, processes=8, info_rate=0.03, bug_rate=bug_rate)
    path = _write(tmp_path / "h.jsonl", ops)
    memory, parted = _both(path, _tight(path))
    assert _verdicts(parted) == _verdicts(memory)
    if memory[0] == "valid":  # every key checked in both: the same figures
        for name, result in memory[1].items():
            assert _without_timings(parted[1][name]) == _without_timings(result)


@pytest.mark.parametrize("seed", range(3))
def test_simulated_registers_get_the_in_memory_verdicts(tmp_path: Path, seed: int) -> None:
    ops = register_history(seed=seed, ops=2000, keys=5, info_rate=0.05, bug_rate=0.01)
    path = _write(tmp_path / "h.jsonl", ops)
    memory, parted = _both(path, _tight(path))
    assert _verdicts(parted) == _verdicts(memory)


S = 1_000_000_000


def _lease_lost_across_keys(since_s: float | None, stall: bool) -> list[Op]:
    """Process 73 holds a/lock; 55 is granted it at 3.05 s, while process 9 works on b/lock;
    73 records lease-lost at 4.5 s (since ``since_s``) or stalls at 2.5 s. Whether the grant is
    valid depends on where ``since`` falls among b/lock's records."""

    def at(seconds: float, **fields: Any) -> dict[str, Any]:
        return {"time": round(seconds * S), **fields}

    records: list[tuple[Any, ...]] = [
        (73, "invoke", "acquire", "a/lock", None, at(1.0)),
        (73, "ok", "acquire", "a/lock", 1, at(1.1, session="s73")),
        (55, "invoke", "acquire", "a/lock", None, at(1.2)),
        (55, "ok", "acquire", "a/lock", 2, at(3.05, session="s55")),
    ]
    for step in range(20):
        t = 2.0 + step * 0.1
        records += [
            (9, "invoke", "acquire", "b/lock", None, at(t)),
            (9, "ok", "acquire", "b/lock", step + 1, at(t + 0.01, session="s9")),
            (9, "invoke", "release", "b/lock", None, at(t + 0.02)),
            (9, "ok", "release", "b/lock", None, at(t + 0.03)),
        ]
    if since_s is not None:
        since = {"since": round(since_s * S)}
        records += [
            (73, "invoke", "lease-lost", "a/lock", since, at(4.5)),
            (73, "ok", "lease-lost", "a/lock", since, at(4.5)),
        ]
    if stall:
        records += [(73, "invoke", "stall", None, None, at(2.5))]
    records.sort(key=lambda record: record[-1]["time"])
    return history(*records)


@pytest.mark.parametrize(
    ("since_s", "stall", "valid"),
    [(None, False, False), (2.55, False, True), (3.5, False, False), (None, True, True)],
)
def test_session_expiries_come_from_the_whole_history(
    tmp_path: Path, since_s: float | None, stall: bool, valid: bool
) -> None:
    path = _write(tmp_path / "h.jsonl", _lease_lost_across_keys(since_s, stall))
    memory, parted = _both(path, {"buckets": 2, "max_group_records": 90})
    assert _verdicts(parted) == _verdicts(memory)
    assert memory[1]["linearizable"].verdict == ("valid" if valid else "invalid")


def test_a_torn_last_line_is_read_as_the_prefix(tmp_path: Path) -> None:
    ops = lock_history(seed=3, ops=400, locks=3)
    path = _write(tmp_path / "h.jsonl", ops, tail='{"index":9999,"time":1,"proc')
    memory, parted = _both(path, _tight(path))
    assert _verdicts(parted) == _verdicts(memory)
    assert parted[1]["stats"].stats == memory[1]["stats"].stats


UNPAIRED = '{"index":0,"time":0,"process":99,"type":"ok","f":"acquire","key":"k"}\n'


def _with_bad_lines(path: Path, bad: str, later: str) -> Path:
    """A lock history with ``bad`` as line 51 and ``later`` as line 121."""
    ops = lock_history(seed=4, ops=200, locks=2)
    lines = [json.dumps(op.to_json()) + "\n" for op in ops]
    lines.insert(50, bad)
    lines.insert(120, later)
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize(
    ("bad", "later", "expected"),
    [
        (UNPAIRED, "", "h.jsonl:51: ok of acquire by process 99 without an invocation"),
        # unpaired at line 51, but reading fails at line 121: the in-memory reader reads first
        (UNPAIRED, "still not json\n", "h.jsonl:121: not valid JSON"),
        ("not json\n", "still not json\n", "h.jsonl:51: not valid JSON"),
    ],
)
def test_a_bad_line_is_the_same_error(tmp_path: Path, bad: str, later: str, expected: str) -> None:
    path = _with_bad_lines(tmp_path / "h.jsonl", bad, later)
    errors = []
    checks: list[Callable[[], object]] = [
        lambda: check_history_file(path, ["linearizable"], {}, partition_above_bytes=IN_MEMORY),
        lambda: check_partitioned(path, ["linearizable"], {}, workers=1),
    ]
    for check in checks:
        with pytest.raises(ConfigError) as caught:
            check()
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert expected in errors[0]


@pytest.mark.process  # the router runs in a forked process
@pytest.mark.parametrize(
    ("bad", "later"),
    [(UNPAIRED, ""), (UNPAIRED, "still not json\n"), ("not json\n", "")],
)
def test_a_forked_router_reports_the_same_bad_line(tmp_path: Path, bad: str, later: str) -> None:
    path = _with_bad_lines(tmp_path / "h.jsonl", bad, later)
    errors = []
    for fork in (False, True):
        with pytest.raises(HistoryError) as caught:
            partition_history(path, Path(tempfile.mkdtemp(dir=tmp_path)), fork_router=fork)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


@pytest.mark.process  # the router runs in a forked process
def test_a_forked_router_copies_the_same_groups(tmp_path: Path) -> None:
    """Routing beside the streaming pass (two processes) leaves the same bucket files, counts,
    sample and session-expiry calls as routing in line."""
    ops = lock_history(seed=8, ops=3000, locks=5, processes=6, info_rate=0.05, bug_rate=0.01)
    path = _write(tmp_path / "h.jsonl", ops, tail='{"index":99999,"time":1,"proc')
    parted = []
    for fork in (False, True):
        workdir = tmp_path / f"fork-{fork}"
        workdir.mkdir()
        parted.append(partition_history(path, workdir, buckets=4, fork_router=fork))
    inline, forked = parted
    assert forked.records == inline.records == len(ops)
    assert [(g.keys, g.records) for g in forked.groups] == [
        (g.keys, g.records) for g in inline.groups
    ]
    for a, b in zip(inline.groups, forked.groups, strict=True):
        assert a.path is not None
        assert b.path is not None
        assert a.path.read_bytes() == b.path.read_bytes()
    assert forked.whole.sample_ops == inline.whole.sample_ops
    assert forked.whole.expiry_calls == inline.whole.expiry_calls
    assert forked.nemesis_ops == inline.nemesis_ops
    for part, fork in ((inline, False), (forked, True)):  # only the groups' files are left
        left = {path.name for path in (tmp_path / f"fork-{fork}").iterdir()}
        assert left == {g.path.name for g in part.groups if g.path is not None}


def test_a_key_too_large_to_load_is_unknown_with_the_reason(tmp_path: Path) -> None:
    ops = lock_history(seed=5, ops=2000, locks=4)
    path = _write(tmp_path / "h.jsonl", ops)
    limits = _tight(path)
    limits["max_group_records"] -= 1  # the largest key no longer fits
    verdict, results = check_partitioned(path, _names({}), {}, **limits, workers=1) or ("", {})
    assert verdict == "unknown"
    linearizable = results["linearizable"]
    assert linearizable.verdict == "unknown"
    assert linearizable.reason is not None
    assert "records, more than the" in linearizable.reason
    assert results["availability"].verdict == "valid"  # streamed: no key is loaded for it


@pytest.mark.process  # the groups are checked in forked workers
def test_the_pipeline_partitions_a_large_file_and_falls_back_for_whole_history_checkers(
    tmp_path: Path,
) -> None:
    ops = lock_history(seed=6, ops=1000, locks=3)
    path = _write(tmp_path / "h.jsonl", ops)
    options = {"ttl": 0.2}  # liveness, which judges the whole history in memory
    assert "liveness" in default_checkers(ops, options)
    assert check_partitioned(path, _names(options), options) is None
    small = check_history_file(path, _names(options), options, partition_above_bytes=IN_MEMORY)
    large = check_history_file(path, _names(options), options, partition_above_bytes=0)
    assert _verdicts(large) == _verdicts(small)
    memory = check_history_file(path, _names({}), {}, partition_above_bytes=IN_MEMORY)
    parted = check_history_file(path, _names({}), {}, partition_above_bytes=0)
    assert _verdicts(parted) == _verdicts(memory)
    for name, result in memory[1].items():  # valid: every figure the same, from two workers
        assert _without_timings(parted[1][name]) == _without_timings(result)


@pytest.mark.process  # forked workers
def test_forked_workers_find_the_same_anomalies(tmp_path: Path) -> None:
    ops = lock_history(seed=7, ops=4000, locks=6, processes=8, info_rate=0.03, bug_rate=0.02)
    path = _write(tmp_path / "h.jsonl", ops)
    alone = check_partitioned(path, _names({}), {}, workers=1, buckets=4)
    forked = check_partitioned(path, _names({}), {}, workers=2, buckets=4)
    assert alone is not None
    assert forked is not None
    assert alone[0] == "invalid"
    for name, result in alone[1].items():
        assert _without_timings(forked[1][name]) == _without_timings(result)


def test_records_of_a_call_follow_its_invocations_key(tmp_path: Path) -> None:
    """A completion without a key goes where its invocation went."""
    ops = history(
        (1, "invoke", "acquire", "k1", None),
        (1, "ok", "acquire", None, 1, {"session": "s1"}),
        (2, "invoke", "acquire", "k2", None),
        (2, "ok", "acquire", None, 1, {"session": "s2"}),
    )
    path = _write(tmp_path / "h.jsonl", ops)
    part = partition_history(path, tmp_path, buckets=2)
    assert sorted(len(group.keys) for group in part.groups) in ([1, 1], [2])
    groups = {key: group for group in part.groups for key in group.keys}
    assert set(groups) == {"k1", "k2"}
    memory, parted = _both(path)
    assert _verdicts(parted) == _verdicts(memory)


def test_spilled_columns_read_back_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.checker.partition.SPILL_CHUNK", 7)
    column = SpilledInts()
    for value in range(50):
        column.append(value * 3)
    values = column.values()
    assert list(values) == [value * 3 for value in range(50)]
    assert len(values) == 50


def test_edn_content_is_never_partitioned(tmp_path: Path) -> None:
    """Jepsen EDN in a file named .jsonl is read as EDN in memory, however large."""
    path = tmp_path / "history.jsonl"
    path.write_text(
        "{:index 0 :time 100 :type :invoke :process 0 :f :acquire :value nil}\n"
        "{:index 1 :time 200 :type :ok :process 0 :f :acquire :value nil}\n",
        encoding="utf-8",
    )
    checked = check_history_file(
        path, ["linearizable"], {"model": "mutex"}, partition_above_bytes=0
    )
    assert _verdicts(checked) == ("valid", {"linearizable": "valid", "stats": "valid"})


@pytest.mark.parametrize("since_s", [2.55, 3.02, 3.5])
def test_a_file_out_of_index_order_places_lease_lost_as_in_memory(
    tmp_path: Path, since_s: float
) -> None:
    """Records written out of index order (another tool's file): where ``since`` falls is
    found among the records sorted by index, as in memory."""
    ops = _lease_lost_across_keys(since_s, stall=False)
    grant = next(n for n, op in enumerate(ops) if op.process == 55 and op.type == "ok")
    assert ops[grant + 1].process == 9
    ops[grant], ops[grant + 1] = ops[grant + 1], ops[grant]  # file order != index order
    path = _write(tmp_path / "h.jsonl", ops)
    memory, parted = _both(path, {"buckets": 2, "max_group_records": 90})
    assert _verdicts(parted) == _verdicts(memory)
