"""The linearizability checker (WGL search per key) on valid lock histories built as records:
processes taking turns on three locks, without and with lease-lost records (optional ops), on
the compiled core (when built) and on the pure-Python search (``LOCKBENCH_PURE_PYTHON=1``)."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.checker import native
from bench.checker.linearizable import check_linearizable
from benchmarks.drivers.histories import lock_history
from lockbench.options import CheckOptions

CYCLES = 2_000


@pytest.mark.parametrize("core", ["compiled", "python"])
@pytest.mark.parametrize("lost_every", [0, 100], ids=["no-lease-lost", "lease-lost-1-in-100"])
def test_check_lock_history(
    benchmark: BenchmarkFixture, monkeypatch: pytest.MonkeyPatch, lost_every: int, core: str
) -> None:
    if core == "python":
        monkeypatch.setenv("LOCKBENCH_PURE_PYTHON", "1")
    elif not native.available():
        pytest.skip("the compiled core is not built (bash scripts/setup.sh builds it)")
    history = lock_history(CYCLES, processes=10, locks=3, lost_every=lost_every)
    result = benchmark(check_linearizable, history, CheckOptions())
    assert result.verdict == "valid", result
