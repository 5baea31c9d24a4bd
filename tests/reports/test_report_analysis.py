"""The report's analysis turns a history into fault windows, roles, holds and accesses correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.checking import run_checkers
from lockbench.history import pair_calls, read_history
from lockbench.protocols import Anomaly
from reports import analysis
from reports.run_data import load_run
from tests.reports.report_support import SampleStore, write_history


def _nemesis(f: str, value: object = None, typ: str = "info") -> dict[str, object]:
    return {"process": "nemesis", "type": typ, "f": f, "key": None, "value": value}


def test_fault_windows_pair_start_and_stop_and_name_partition_sides(tmp_path: Path) -> None:
    grudge = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"]}
    grudge |= {"n4": ["n1", "n2"], "n5": ["n1", "n2"]}
    write_history(
        tmp_path,
        [
            _nemesis("start-partition", {"grudge": grudge}, "invoke"),
            _nemesis("start-partition", {"grudge": grudge}),
            _nemesis("start-kill", {"nodes": ["n3"]}),
            _nemesis("stop-partition", None),
            _nemesis("stop-kill", None),
            _nemesis("start-pause", {"nodes": ["n2"]}),
        ],
    )
    ops = read_history(tmp_path / "history.jsonl")
    windows = analysis.fault_windows(ops, end_time=1.0)
    assert [(w.fault, w.start, w.end, w.healed) for w in windows] == [
        ("partition", 0.001, 0.003, True),
        ("kill", 0.002, 0.004, True),
        ("pause", 0.005, 1.0, False),
    ]
    assert windows[0].targets == "n1,n2 | n3,n4,n5"
    assert windows[1].label == "kill n3"
    assert "not healed" in windows[2].label


def test_leader_spans_and_failover_gaps(tmp_path: Path) -> None:
    write_history(
        tmp_path,
        [
            _nemesis("leader", {"leader": "n1", "term": 1}),
            _nemesis("leader", {"leader": "n1", "term": 1}),
            _nemesis("leader", {"leader": None, "term": 1}),
            _nemesis("leader", {"leader": None, "term": 1}),
            _nemesis("leader", {"leader": "n4", "term": 2}),
        ],
        step_ns=500_000_000,
    )
    ops = read_history(tmp_path / "history.jsonl")
    spans = analysis.leader_spans(ops, end_time=3.0)
    assert [(s.leader, s.term, s.start, s.end) for s in spans] == [
        ("n1", 1, 0.0, 1.0),
        (None, 1, 1.0, 2.0),
        ("n4", 2, 2.0, 3.0),
    ]
    assert analysis.failover_gaps(spans) == [(1.0, 2.0, "failover 1.00 s: n1 → n4")]


def test_a_leader_change_with_no_leaderless_sample_is_a_failover_timed_from_the_kill(
    tmp_path: Path,
) -> None:
    # The leader poll saw n1, then n3 at once: the election finished between two polls. The
    # report once listed no failover here, the first leader change after a leader kill.
    write_history(
        tmp_path,
        [
            _nemesis("leader", {"leader": "n1", "term": 1}),
            _nemesis("leader", {"leader": "n1", "term": 1}),
            _nemesis("start-kill", {"nodes": ["n1"]}),
            _nemesis("leader", {"leader": "n1", "term": 1}),
            _nemesis("leader", {"leader": "n3", "term": 2}),
            _nemesis("stop-kill", {"nodes": ["n1"]}),
            _nemesis("leader", {"leader": "n3", "term": 2}),
        ],
        step_ns=500_000_000,
    )
    ops = read_history(tmp_path / "history.jsonl")
    spans = analysis.leader_spans(ops, end_time=3.0)
    faults = analysis.fault_windows(ops, end_time=3.0)
    assert analysis.failover_gaps(spans, faults) == [(1.0, 2.0, "failover 1.00 s: n1 → n3")]
    # without a fault to time it from, the change is still listed
    assert analysis.failover_gaps(spans) == [(2.0, 2.0, "failover under one poll: n1 → n3")]


def test_lock_holds_carry_tokens_and_unknown_acquires_are_possible_holds(tmp_path: Path) -> None:
    write_history(
        tmp_path,
        [
            {"process": 0, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 0, "type": "ok", "f": "acquire", "key": "a", "value": 41},
            {"process": 1, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 0, "type": "invoke", "f": "release", "key": "a"},
            {"process": 0, "type": "ok", "f": "release", "key": "a"},
            {"process": 1, "type": "info", "f": "acquire", "key": "a", "error": "timeout"},
        ],
    )
    ops = read_history(tmp_path / "history.jsonl")
    calls = analysis.calls_frame(pair_calls(ops), end_time=0.005)
    holds = analysis.lock_holds(calls, ttl_s=2.0)
    certain = holds[holds["certain"]].iloc[0]
    assert (certain["process"], certain["token"], certain["start"], certain["end"]) == (
        0,
        41,
        0.001,
        0.004,
    )
    possible = holds[~holds["certain"]].iloc[0]
    assert possible["process"] == 1
    assert possible["start"] == 0.002
    assert possible["end"] == 0.005 + 2.0


def test_fenced_resource_refusals_are_found(sample_store: SampleStore) -> None:
    data = load_run(sample_store.valid)
    calls = analysis.calls_frame(data.calls, data.duration_s)
    accesses = analysis.resource_accesses(calls)
    refused = accesses[~accesses["accepted"]]
    assert len(refused) == 2, "the stalled holder's late write and exit are refused"
    highest_before = accesses[accesses["accepted"] & (accesses["time"] < refused["time"].min())]
    lock = refused["key"].iloc[0]
    assert refused["token"].max() < highest_before[highest_before["key"] == lock]["token"].max()


def test_thinning_keeps_every_failure_and_anomaly_op(sample_store: SampleStore) -> None:
    data = load_run(sample_store.invalid)
    calls = analysis.calls_frame(data.calls, data.duration_s)
    keep = analysis.anomaly_indices(data.results)
    thinned = analysis.thin_calls(calls, keep, limit=2_000)
    assert len(thinned) <= 2_000 + int((calls["outcome"] != "ok").sum()) + len(keep)
    assert len(thinned) < len(calls)
    assert set(calls[calls["outcome"] != "ok"]["inv_index"]) <= set(thinned["inv_index"])
    named = {i for r in data.results for a in r.anomalies for i in a.op_indices}
    shown = set(thinned["inv_index"]) | set(thinned["done_index"])
    assert named <= shown
    assert np.all(np.diff(thinned["inv_index"].to_numpy()) > 0), "still in history order"


def test_percentiles_and_throughput_use_round_buckets(sample_store: SampleStore) -> None:
    data = load_run(sample_store.valid)
    calls = analysis.calls_frame(data.calls, data.duration_s)
    bucket = analysis.bucket_seconds(data.duration_s)
    assert bucket in analysis.NICE_BUCKETS_S
    percentiles = analysis.latency_percentiles(calls, bucket)
    assert (percentiles["p50"] <= percentiles["p95"]).all()
    assert (percentiles["p95"] <= percentiles["p99"]).all()
    rates = analysis.throughput(calls, bucket)
    completed = int(calls["outcome"].isin(["ok", "fail", "info"]).sum())
    assert round(float(rates[["ok", "fail", "info"]].sum().sum()) * bucket) == completed


def test_clock_offsets_are_read_from_clock_observations(sample_store: SampleStore) -> None:
    data = load_run(sample_store.valid)
    offsets = analysis.clock_offsets(data.ops)
    assert set(offsets["node"]) == {"n1", "n2", "n3", "n4", "n5"}
    assert offsets["offset_ms"].abs().max() > 100, "the skewed node shows its offset"


def test_thinning_bounds_rows_even_when_failures_alone_exceed_the_limit() -> None:
    frame = pd.DataFrame({"n": np.arange(10_000)})
    must = (frame["n"] == 9_999).to_numpy()
    failures = (frame["n"] % 2 == 0).to_numpy()
    thinned = analysis.thin_rows(frame, must, 1_000, preferred=failures)
    assert len(thinned) == 1_000
    assert 9_999 in set(thinned["n"]), "a must-keep row survives"
    assert (thinned["n"].iloc[1:] % 2 == 0).all(), "preferred rows fill the room first"
    spread = thinned["n"].iloc[1:]
    assert spread.min() < 100, "evenly spaced, not a prefix"
    assert spread.max() > 9_800, "evenly spaced, not a prefix"


def test_an_anomaly_without_times_spans_the_ops_it_names() -> None:
    times = {3: 1.5, 9: 2.25, 12: 4.0}
    anomaly = Anomaly(kind="k", explanation="e", op_indices=(9, 3, 77))
    assert analysis.anomaly_span(anomaly, times) == (1.5, 2.25)
    assert analysis.anomaly_span(Anomaly(kind="k", explanation="e"), times) is None
    stated = Anomaly(kind="k", explanation="e", time_start=1_000_000_000, time_end=2_000_000_000)
    assert analysis.anomaly_span(stated, times) == (1.0, 2.0)


def test_overlapping_holds_are_found_from_the_clients_view(tmp_path: Path) -> None:
    write_history(
        tmp_path,
        [
            {"process": 0, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 0, "type": "ok", "f": "acquire", "key": "a", "value": 5},
            {"process": 1, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 1, "type": "ok", "f": "acquire", "key": "a", "value": 6},
            {"process": 0, "type": "invoke", "f": "release", "key": "a"},
            {"process": 0, "type": "fail", "f": "release", "key": "a", "error": "not-holder"},
            {"process": 1, "type": "invoke", "f": "release", "key": "a"},
            {"process": 1, "type": "ok", "f": "release", "key": "a"},
            {"process": 2, "type": "invoke", "f": "acquire", "key": "a"},
            {"process": 2, "type": "ok", "f": "acquire", "key": "a", "value": 7},
        ],
    )
    ops = read_history(tmp_path / "history.jsonl")
    calls = analysis.calls_frame(pair_calls(ops), end_time=0.01)
    overlaps = analysis.overlapping_holds(analysis.lock_holds(calls, ttl_s=None))
    assert overlaps[["start", "end", "first", "second", "tokens"]].values.tolist() == [
        [0.003, 0.004, 0, 1, "5 & 6"]
    ], "process 0 believed it held the lock until it asked to release it"


def test_only_the_holder_that_stalled_overlaps_later_holders(sample_store: SampleStore) -> None:
    data = load_run(sample_store.valid)
    calls = analysis.calls_frame(data.calls, data.duration_s)
    overlaps = analysis.overlapping_holds(analysis.lock_holds(calls, ttl_s=None))
    stalled = {row.first for row in overlaps.itertuples()}
    assert len(stalled) == 1, "only the holder that stalled past its lease overlaps anyone"
    assert (overlaps["start"] > 0.4 * data.duration_s).all()


def test_the_mutual_exclusion_stats_count_the_overlaps_the_report_shades(
    sample_store: SampleStore,
) -> None:
    # once: overlapping_pairs 0 in the checker's stats while the report counted 629 two-holder
    # moments. The stats now carry the report's count under its own name.
    for run in (sample_store.valid, sample_store.invalid):
        data = load_run(run)
        calls = analysis.calls_frame(data.calls, data.duration_s)
        shaded = len(analysis.overlapping_holds(analysis.lock_holds(calls, ttl_s=None)))
        _, results = run_checkers(data.ops, ["mutual-exclusion"], {})
        stats = results["mutual-exclusion"].stats
        assert stats["overlapping_holds"] == shaded > 0
        assert "overlapping_sections" in stats
        assert "overlapping_pairs" not in stats
