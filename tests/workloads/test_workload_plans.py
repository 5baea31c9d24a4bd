"""Workloads plan per process, adapt to outcomes, and are reproducible from the seed."""

from __future__ import annotations

from typing import Any

from bench.runner.components import workload_spec
from lockbench.options import parse_options
from lockbench.protocols import Invocation
from workloads.base import BenchWorkload, WorkloadContext
from workloads.resource import ResourceClient


def make(name: str, concurrency: int = 4, seed: int = 1, **options: Any) -> BenchWorkload:
    spec = workload_spec(name)
    # The client is never used here (no op is performed); it only tells the plans a resource exists.
    resource = ResourceClient("127.0.0.1", 19999)
    context = WorkloadContext(seed, concurrency, 2.0, ("n1", "n2", "n3"), resource)
    return spec.build(parse_options(spec.options, options), context)


def drive(workload: BenchWorkload, process: int, results: dict[str, Any], steps: int) -> list[str]:
    """Play one process against canned outcomes: ``results[f]`` = (type, value)."""
    seen = []
    for _ in range(steps):
        op = workload.next_op(process)
        assert op is not None
        seen.append(op.f)
        outcome, value = results.get(op.f, ("ok", None))
        workload.update(process, op, outcome, value)
    return seen


def test_mutex_enters_the_resource_with_the_granted_token_then_releases() -> None:
    workload = make("mutex", use_resource=True)
    first = workload.next_op(0)
    assert first is not None
    assert first.f == "acquire"
    workload.update(0, first, "ok", 42)
    ops = [workload.next_op(0) for _ in range(3)]
    assert [(o.f, o.value) for o in ops if o] == [
        ("res-enter", {"token": 42}),
        ("res-exit", {"token": 42}),
        ("release", None),
    ]


def test_a_failed_acquire_skips_the_critical_section() -> None:
    workload = make("mutex")
    assert drive(workload, 0, {"acquire": ("fail", None)}, 3) == ["acquire"] * 3


def test_the_fenced_counter_writes_what_it_read_plus_one_with_its_token() -> None:
    workload = make("fenced-counter")
    ops: list[Invocation] = []
    canned = {"acquire": 7, "res-read": {"accepted": True, "value": 41}}
    for _ in range(6):
        op = workload.next_op(2)
        assert op is not None
        ops.append(op)
        workload.update(2, op, "ok", canned.get(op.f))
    assert [o.f for o in ops] == [
        "acquire",
        "res-enter",
        "res-read",
        "res-write",
        "res-exit",
        "release",
    ]
    assert ops[3].value == {"token": 7, "value": 42}
    assert [o.f for o in workload.final_ops()] == ["final-read"]


def test_a_refused_read_ends_the_critical_section_early() -> None:
    workload = make("fenced-counter")
    fs = drive(workload, 0, {"acquire": ("ok", 3), "res-read": ("fail", None)}, 5)
    assert fs == ["acquire", "res-enter", "res-read", "res-exit", "release"]


def test_lease_expiry_stalls_past_the_ttl_then_writes_with_the_old_token() -> None:
    workload = make("lease-expiry", stall_probability=1.0, stall_ttl_factor=2.0)
    fs = drive(workload, 0, {"acquire": ("ok", 9)}, 6)
    assert fs == ["acquire", "res-enter", "stall", "res-write", "res-exit", "release"]
    stall = Invocation("stall", "lease/0", {"seconds": 4.0})
    assert workload.op_timeout(stall, 5.0) == 9.0  # the stall gets its own time on top


def test_watchers_resume_after_the_last_revision_they_saw() -> None:
    workload = make("watch", concurrency=4, watchers=1, duration=1.0)
    first = workload.next_op(0)
    assert first is not None
    assert first.value["from_revision"] == 0
    events = [{"revision": r, "kind": "acquired", "lock": "watch/0"} for r in (5, 6)]
    workload.update(0, first, "ok", events)
    second = workload.next_op(0)
    assert second is not None
    assert second.value["from_revision"] == 7
    # a successor of the retired watcher keeps the slot's stream going
    workload.update(0, second, "info", None)
    successor = workload.next_op(4)
    assert successor is not None
    assert successor.value["from_revision"] == 7
    assert workload.next_op(1).f == "acquire"  # type: ignore[union-attr]


def test_follower_reads_visit_every_node() -> None:
    workload = make("follower-read")
    nodes = set()
    for _ in range(6):
        op = workload.next_op(1)
        assert op is not None
        assert op.f == "owner"
        nodes.add(workload.node_of(op))
        workload.update(1, op, "ok", {"holders": [], "token": None})
    assert nodes == {"n1", "n2", "n3"}


def ops_of(order: list[int], seed: int = 99) -> dict[int, list[Any]]:
    """Each process's ops when processes take turns in ``order`` (every acquire fails)."""
    workload = make("mutex", seed=seed, locks=5)
    seen: dict[int, list[Any]] = {p: [] for p in set(order)}
    for process in order:
        op = workload.next_op(process)
        assert op is not None
        seen[process].append((op.f, op.key))
        workload.update(process, op, "fail", None)
    return seen


def test_the_same_seed_gives_the_same_ops_whatever_the_interleaving() -> None:
    assert ops_of([0, 1] * 20) == ops_of([1] * 20 + [0] * 20)
    assert ops_of([0] * 20, seed=99) != ops_of([0] * 20, seed=100)
