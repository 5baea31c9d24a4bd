"""Holders check their lease before each critical-section step and act on a lapse carefully.

The runner asks ``lease_to_check`` before each op and, when the client says the lease may have
lapsed, records ``lease-lost`` and calls ``lease_lost``. These tests play that protocol against
the workloads' plans with canned outcomes (no service): what is checked, how often, and what the
plan does next.
"""

from __future__ import annotations

from typing import Any

from bench.runner.components import workload_spec
from lockbench.options import parse_options
from lockbench.protocols import Invocation
from workloads.base import BenchWorkload, WorkloadContext
from workloads.resource import ResourceClient


def make(name: str, **options: Any) -> BenchWorkload:
    spec = workload_spec(name)
    # never connected: it only tells the plans that a protected resource exists
    resource = ResourceClient("127.0.0.1", 26999)
    context = WorkloadContext(3, 2, 2.0, ("n1",), resource)
    return spec.build(parse_options(spec.options, options), context)


def step(workload: BenchWorkload, process: int, value: Any = None) -> Invocation:
    """Take the next op and complete it ok with ``value``."""
    op = workload.next_op(process)
    assert op is not None
    workload.update(process, op, "ok", value)
    return op


def test_only_steps_of_a_holder_need_the_lease() -> None:
    workload = make("mutex", locks=1)
    assert workload.lease_to_check(0) is None  # the next op is an acquire: nothing held yet
    assert step(workload, 0, 5).f == "acquire"
    assert workload.lease_to_check(0) == "lock/0"  # res-enter
    assert step(workload, 0, {"accepted": True}).f == "res-enter"
    assert workload.lease_to_check(0) == "lock/0"  # res-exit
    step(workload, 0, {"accepted": True})
    assert workload.lease_to_check(0) == "lock/0"  # release
    assert step(workload, 0).f == "release"
    assert workload.lease_to_check(0) is None  # released: the next cycle starts with an acquire


def test_a_mutex_holder_whose_lease_lapsed_leaves_the_resource_alone_and_releases() -> None:
    workload = make("mutex", locks=1)
    step(workload, 0, 5)
    workload.lease_lost(0, "lock/0")
    assert workload.lease_to_check(0) is None  # recorded once per grant
    assert step(workload, 0).f == "release"
    assert step(workload, 0).f == "acquire"  # a fresh cycle


def test_a_lapse_inside_the_critical_section_skips_its_exit() -> None:
    workload = make("mutex", locks=1)
    step(workload, 0, 5)
    step(workload, 0, {"accepted": True})  # res-enter
    workload.lease_lost(0, "lock/0")
    assert step(workload, 0).f == "release"


def test_each_grant_is_checked_again() -> None:
    workload = make("mutex", locks=1)
    step(workload, 0, 5)
    workload.lease_lost(0, "lock/0")
    step(workload, 0)  # release
    step(workload, 0, 6)  # acquire again: a new grant
    assert workload.lease_to_check(0) == "lock/0"


def test_a_counter_holder_whose_lease_lapsed_writes_nothing_and_releases() -> None:
    workload = make("fenced-counter")
    step(workload, 1, 7)  # acquire
    step(workload, 1, {"accepted": True})  # res-enter; res-read is planned next
    workload.lease_lost(1, "counter/0")
    assert step(workload, 1).f == "release"
    assert step(workload, 1).f == "acquire"


def test_a_stale_holder_in_lease_expiry_keeps_going_to_test_fencing() -> None:
    workload = make("lease-expiry", stall_probability=1.0)
    step(workload, 0, 9)  # acquire
    step(workload, 0, {"accepted": True})  # res-enter
    assert step(workload, 0, {"seconds": 3.0}).f == "stall"
    assert workload.lease_to_check(0) == "lease/0"
    workload.lease_lost(0, "lease/0")
    write = workload.next_op(0)
    assert write is not None
    assert write.f == "res-write"
    assert write.value["token"] == 9


def test_a_retired_process_holds_nothing() -> None:
    workload = make("mutex", locks=1)
    step(workload, 0, 5)
    op = workload.next_op(0)
    assert op is not None
    workload.update(0, op, "info", None)
    assert workload.lease_to_check(0) is None
