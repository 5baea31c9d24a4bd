"""The workloads a test file can name, with their options classes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workloads.base import BenchWorkload, WorkloadContext
from workloads.fenced_counter import FencedCounterOptions, FencedCounterWorkload
from workloads.follower_read import FollowerReadOptions, FollowerReadWorkload
from workloads.lease_expiry import LeaseExpiryOptions, LeaseExpiryWorkload
from workloads.mutex import MutexOptions, MutexWorkload
from workloads.watch import WatchOptions, WatchWorkload


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A workload's name, its options dataclass and its class."""

    name: str
    options: type[Any]
    factory: Callable[[Any, WorkloadContext], BenchWorkload]
    default_checkers: tuple[str, ...]
    uses_resource: bool


def _spec(cls: type[BenchWorkload], options: type[Any]) -> WorkloadSpec:
    return WorkloadSpec(cls.name, options, cls, cls.default_checkers, cls.uses_resource)


WORKLOADS: Mapping[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        _spec(MutexWorkload, MutexOptions),
        _spec(FencedCounterWorkload, FencedCounterOptions),
        _spec(LeaseExpiryWorkload, LeaseExpiryOptions),
        _spec(WatchWorkload, WatchOptions),
        _spec(FollowerReadWorkload, FollowerReadOptions),
    )
}
