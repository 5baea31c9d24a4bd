"""Counters and histograms a replica keeps about itself, in a shape a Prometheus exporter can
render directly (cumulative buckets, sum, count). No dependency on a metrics library: the
monitoring layer decides how to export them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Spans fdatasync on an SSD (~0.2 ms) up to a proposal stuck behind an election (seconds)."""

BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Records per fsync: 1 is no group commit, hundreds is heavy batching."""


@dataclass
class Histogram:
    """Observations counted into fixed upper-bound buckets (the last bucket is +Inf)."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) pairs, ending with (inf, count)."""
        running = 0
        result = []
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (coarse, for logs and tests)."""
        if self.count == 0:
            return 0.0
        target = q * self.count
        for bound, running in self.cumulative():
            if running >= target:
                return bound
        return float("inf")


@dataclass
class ReplicaMetrics:
    """What a replica counts. Counter names are stable: the monitoring layer exports them."""

    elections_started: int = 0
    leader_changes: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    messages_dropped: int = 0
    malformed_frames: int = 0
    tls_handshake_failures: int = 0
    proposals: int = 0
    proposals_failed: int = 0
    reads: int = 0
    reads_failed: int = 0
    fsyncs: int = 0
    records_persisted: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    fsync_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_SECONDS))
    records_per_fsync: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    proposal_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_SECONDS))
    read_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_SECONDS))

    def counters(self) -> dict[str, int]:
        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, int) and not isinstance(value, bool)
        }

    def histograms(self) -> dict[str, Histogram]:
        return {name: value for name, value in vars(self).items() if isinstance(value, Histogram)}
