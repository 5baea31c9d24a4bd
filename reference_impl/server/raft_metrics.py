"""Exports the Replica's own counters and histograms (reference_impl.raft.metrics) and its role,
term and indices as Prometheus metrics named ``lockd_raft_*``."""

from __future__ import annotations

import math

from reference_impl.raft.types import Role
from reference_impl.server.metrics import Registry
from reference_impl.server.replica import Replica


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if value == int(value) else repr(value)


def register_replica_metrics(registry: Registry, replica: Replica) -> None:
    gauges = {
        "lockd_raft_is_leader": ("1 on the leader, else 0.", lambda: float(replica.is_leader)),
        "lockd_raft_leader_known": (
            "1 when this node knows a leader.",
            lambda: float(replica.leader_id is not None),
        ),
        "lockd_raft_term": ("Current Raft term.", lambda: float(replica.term)),
        "lockd_raft_commit_index": ("Highest committed index.", lambda: replica.commit_index),
        "lockd_raft_applied_index": ("Highest applied index.", lambda: replica.applied_index),
        "lockd_raft_apply_lag": (
            "Committed but not yet applied entries.",
            lambda: float(replica.commit_index - replica.applied_index),
        ),
    }
    for name, (help_text, read) in gauges.items():
        registry.gauge(name, help_text, read)

    def collect() -> list[str]:
        lines = [
            "# HELP lockd_raft_role Role of this node (1 for the current one).",
            "# TYPE lockd_raft_role gauge",
        ]
        for role in Role:
            lines.append(f'lockd_raft_role{{role="{role.value}"}} {int(replica.role is role)}')
        lines += [
            "# HELP lockd_raft_leader The leader this node knows (1 for its id, absent if none).",
            "# TYPE lockd_raft_leader gauge",
        ]
        if replica.leader_id is not None:
            lines.append(f'lockd_raft_leader{{leader="{replica.leader_id}"}} 1')
        for counter, value in replica.metrics.counters().items():
            name = f"lockd_raft_{counter}_total"
            lines += [f"# HELP {name} Replica counter {counter}.", f"# TYPE {name} counter"]
            lines.append(f"{name} {value}")
        for histogram_name, histogram in replica.metrics.histograms().items():
            name = f"lockd_raft_{histogram_name}"
            lines += [
                f"# HELP {name} Replica histogram {histogram_name}.",
                f"# TYPE {name} histogram",
            ]
            for bound, count in histogram.cumulative():
                lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
            lines.append(f"{name}_sum {_number(histogram.total)}")
            lines.append(f"{name}_count {histogram.count}")
        return lines

    registry.collectors.append(collect)
