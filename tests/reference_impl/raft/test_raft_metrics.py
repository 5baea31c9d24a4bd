"""Replica metrics: histograms bucket like Prometheus (cumulative, +Inf last) and the counter
and histogram names the monitoring layer exports stay stable."""

from __future__ import annotations

import pytest

from reference_impl.raft.metrics import Histogram, ReplicaMetrics


def test_a_histogram_counts_into_cumulative_buckets_with_inf_last() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert histogram.count == 4
    assert histogram.total == pytest.approx(7.65)
    assert histogram.quantile(0.5) == 0.1
    assert histogram.quantile(0.99) == float("inf")
    assert Histogram((1.0,)).quantile(0.5) == 0.0


def test_metrics_expose_the_documented_counters_and_histograms() -> None:
    metrics = ReplicaMetrics()
    metrics.fsyncs += 2
    counters = metrics.counters()
    assert counters["fsyncs"] == 2
    assert {"elections_started", "leader_changes", "messages_sent", "malformed_frames"} <= set(
        counters
    )
    assert set(metrics.histograms()) == {
        "fsync_seconds",
        "records_per_fsync",
        "proposal_seconds",
        "read_seconds",
    }
