"""Hand-written histories with known answers for every model, switch and crash rule."""

from __future__ import annotations

from typing import Any

import pytest

from bench.checker.linearizable import check_linearizable
from lockbench.errors import ConfigError
from lockbench.history import Op
from lockbench.options import CheckOptions
from tests.bench.checker.checker_histories import history


def verdict(ops: list[Op], **options: Any) -> str:
    return check_linearizable(ops, CheckOptions(**options)).verdict


SEQUENTIAL_LOCKING = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (0, "invoke", "release", "L", None),
    (0, "ok", "release", "L", None),
    (1, "invoke", "acquire", "L", None),
    (1, "ok", "acquire", "L", 2),
)
DOUBLE_GRANT = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (1, "invoke", "acquire", "L", None),
    (1, "ok", "acquire", "L", 2),
)
RELEASE_BY_OTHER = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (1, "invoke", "release", "L", None),
    (1, "ok", "release", "L", None),
)
DECREASING_TOKENS = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 5),
    (0, "invoke", "release", "L", None),
    (0, "ok", "release", "L", None),
    (1, "invoke", "acquire", "L", None),
    (1, "ok", "acquire", "L", 3),
)
# Process 0 holds the lock and crashes (its next op, an owner query, ends in info): the session
# expires later and process 2 gets the lock.
CRASHED_HOLDER = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (0, "invoke", "owner", "L", None),
    (0, "info", "owner", "L", None),
    (2, "invoke", "acquire", "L", None),
    (2, "ok", "acquire", "L", 2),
)
# The lock is granted to someone else before the holder's crash (the info completion of its
# owner query): an expiry may only happen after the info, so this is a double grant.
EXPIRY_BEFORE_CRASH = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (0, "invoke", "owner", "L", None),
    (2, "invoke", "acquire", "L", None),
    (2, "ok", "acquire", "L", 2),
    (0, "info", "owner", "L", None),
)
STALLED_HOLDER = history(
    (0, "invoke", "acquire", "L", None),
    (0, "ok", "acquire", "L", 1),
    (0, "invoke", "stall", None, {"seconds": 3}),
    (1, "invoke", "acquire", "L", None),
    (1, "ok", "acquire", "L", 2),
    (0, "ok", "stall", None, {"seconds": 3}),
    (0, "invoke", "release", "L", None),
    (0, "fail", "release", "L", None, {"error": "not the holder"}),
)
INFO_ACQUIRE_NEVER_HAPPENED = history(
    (0, "invoke", "acquire", "L", None),
    (0, "info", "acquire", "L", None),
    (1, "invoke", "acquire", "L", None),
    (1, "ok", "acquire", "L", 7),
    (1, "invoke", "release", "L", None),
    (1, "ok", "release", "L", None),
)


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
def test_sequential_locking_is_valid_in_every_lock_model(model: str) -> None:
    assert verdict(SEQUENTIAL_LOCKING, model=model) == "valid"


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
def test_double_grant_is_invalid_in_every_lock_model(model: str) -> None:
    assert verdict(DOUBLE_GRANT, model=model) == "invalid"


def test_release_by_non_holder_is_legal_only_in_knossos_mutex() -> None:
    assert verdict(RELEASE_BY_OTHER, model="mutex") == "valid"
    assert verdict(RELEASE_BY_OTHER, model="owned-mutex") == "invalid"


def test_fenced_mutex_rejects_a_token_lower_than_an_earlier_grant() -> None:
    assert verdict(DECREASING_TOKENS, model="owned-mutex") == "valid"
    assert verdict(DECREASING_TOKENS, model="fenced-mutex") == "invalid"


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
def test_crashed_holder_lock_may_expire_after_its_info(model: str) -> None:
    assert verdict(CRASHED_HOLDER, model=model) == "valid"
    assert verdict(CRASHED_HOLDER, model=model, crashed_holders="hold") == "invalid"


def test_crashed_holder_lock_cannot_expire_before_its_info() -> None:
    assert verdict(EXPIRY_BEFORE_CRASH, model="owned-mutex") == "invalid"


def test_stalled_holder_lock_may_expire_from_the_stall() -> None:
    assert verdict(STALLED_HOLDER, model="owned-mutex") == "valid"
    assert verdict(STALLED_HOLDER, model="owned-mutex", crashed_holders="hold") == "invalid"


def test_info_acquire_may_never_take_effect() -> None:
    assert verdict(INFO_ACQUIRE_NEVER_HAPPENED, model="owned-mutex") == "valid"


def test_inferred_model_uses_tokens_when_acquires_return_them() -> None:
    result = check_linearizable(DECREASING_TOKENS, CheckOptions())
    assert result.stats["model"] == "fenced-mutex"
    assert result.verdict == "invalid"


STALE_READ = history(
    (0, "invoke", "write", "r", 1),
    (0, "ok", "write", "r", 1),
    (1, "invoke", "write", "r", 2),
    (1, "ok", "write", "r", 2),
    (0, "invoke", "read", "r", None),
    (0, "ok", "read", "r", 1),
)
INFO_WRITE_SEEN_LATER = history(
    (0, "invoke", "write", "r", 1),
    (0, "ok", "write", "r", 1),
    (1, "invoke", "write", "r", 2),
    (1, "info", "write", "r", None),
    (0, "invoke", "read", "r", None),
    (0, "ok", "read", "r", 2),
    (0, "invoke", "read", "r", None),
    (0, "ok", "read", "r", 2),
)
READ_BEFORE_INFO_WRITE = history(
    (0, "invoke", "read", "r", None),
    (0, "ok", "read", "r", 2),
    (1, "invoke", "write", "r", 2),
    (1, "info", "write", "r", None),
)
NIL_READ_AFTER_WRITE = history(
    (0, "invoke", "write", "r", 1),
    (0, "ok", "write", "r", 1),
    (1, "invoke", "read", "r", None),
    (1, "ok", "read", "r", None),
)
FAILED_CAS_THAT_MATCHED = history(
    (0, "invoke", "write", "r", 0),
    (0, "ok", "write", "r", 0),
    (1, "invoke", "cas", "r", [0, 1]),
    (1, "fail", "cas", "r", [0, 1]),
)
CAS_CHAIN = history(
    (0, "invoke", "write", "r", 0),
    (0, "ok", "write", "r", 0),
    (1, "invoke", "cas", "r", [0, 1]),
    (2, "invoke", "cas", "r", [1, 2]),
    (2, "ok", "cas", "r", [1, 2]),
    (1, "ok", "cas", "r", [0, 1]),
    (0, "invoke", "read", "r", None),
    (0, "ok", "read", "r", 2),
)


def test_stale_read_is_invalid_for_registers() -> None:
    assert verdict(STALE_READ, model="register") == "invalid"
    assert verdict(STALE_READ, model="cas-register") == "invalid"


def test_info_write_may_take_effect_later() -> None:
    assert verdict(INFO_WRITE_SEEN_LATER, model="register") == "valid"


def test_info_write_cannot_take_effect_before_its_invocation() -> None:
    assert verdict(READ_BEFORE_INFO_WRITE, model="register") == "invalid"


def test_knossos_nil_reads_switch_makes_a_nil_read_match_anything() -> None:
    assert verdict(NIL_READ_AFTER_WRITE, model="register") == "invalid"
    assert verdict(NIL_READ_AFTER_WRITE, model="register", knossos_nil_reads=True) == "valid"


def test_porcupine_failed_cas_switch_makes_a_failed_cas_an_observation() -> None:
    assert verdict(FAILED_CAS_THAT_MATCHED, model="cas-register") == "valid"
    assert (
        verdict(FAILED_CAS_THAT_MATCHED, model="cas-register", failed_cas_observed=True)
        == "invalid"
    )


def test_concurrent_cas_chain_is_linearized_in_the_order_the_values_require() -> None:
    assert verdict(CAS_CHAIN, model="cas-register") == "valid"


def test_kv_checks_each_key_as_its_own_register() -> None:
    ops = history(
        (0, "invoke", "write", "a", 1),
        (0, "ok", "write", "a", 1),
        (1, "invoke", "read", "b", None),
        (1, "ok", "read", "b", 1),
    )
    assert verdict(ops, model="kv") == "invalid"
    assert verdict(ops, model="kv", initial_value=1) == "valid"


def test_counterexample_window_is_the_few_ops_that_show_the_violation() -> None:
    prefix: list[tuple[Any, ...]] = []
    for i in range(50):
        prefix += [(0, "invoke", "write", "r", i), (0, "ok", "write", "r", i)]
        prefix += [(1, "invoke", "read", "r", None), (1, "ok", "read", "r", i)]
    ops = history(*prefix, *[(r[0], r[1], r[2], r[3], r[4]) for r in STALE_READ_TAIL])
    result = check_linearizable(ops, CheckOptions(model="register"))
    assert result.verdict == "invalid"
    assert result.window is not None
    first, last = result.window
    assert last == len(ops) - 1
    assert last - first <= 5, result.window
    anomaly = result.anomalies[0]
    assert anomaly.kind == "nonlinearizable"
    assert "read" in anomaly.explanation
    assert anomaly.op_indices[-1] == last


STALE_READ_TAIL = [
    (0, "invoke", "write", "r", 100),
    (0, "ok", "write", "r", 100),
    (1, "invoke", "read", "r", None),
    (1, "ok", "read", "r", 49),
]


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        verdict(STALE_READ, model="queue")


def test_cas_in_a_plain_register_history_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cas-register"):
        verdict(CAS_CHAIN, model="register")


def exponential_history(writers: int = 24) -> list[Op]:
    """Concurrent writes of distinct values and a read no order explains: refuting it means
    trying every subset of the writes."""
    records: list[tuple[Any, ...]] = [(p, "invoke", "write", "r", p) for p in range(writers)]
    records += [(p, "ok", "write", "r", p) for p in range(writers)]
    # A value nobody wrote: every write is required (ok), so the search must try every order.
    records += [(writers, "invoke", "read", "r", None), (writers, "ok", "read", "r", -1)]
    return history(*records)


def test_time_budget_gives_unknown_with_a_reason_instead_of_a_hang() -> None:
    import time

    started = time.monotonic()
    result = check_linearizable(
        exponential_history(), CheckOptions(model="register", time_budget_s=0.5)
    )
    assert time.monotonic() - started < 5
    assert result.verdict == "unknown"
    assert result.reason is not None
    assert "time budget of 0.5 s" in result.reason


def test_memory_budget_gives_unknown_with_a_reason() -> None:
    result = check_linearizable(
        exponential_history(),
        CheckOptions(model="register", time_budget_s=60, memory_budget_mb=4),
    )
    assert result.verdict == "unknown"
    assert result.reason is not None
    assert "memory budget of 4 MiB" in result.reason


def owner_history(holders: list[str], token: int | None, *, released: bool) -> list[Op]:
    """Process 0 holds L with token 4 (and maybe releases it); process 1 then reads the owner."""
    records: list[tuple[Any, ...]] = [
        (0, "invoke", "acquire", "L", None),
        (0, "ok", "acquire", "L", 4, {"session": "s0"}),
    ]
    if released:
        records += [(0, "invoke", "release", "L", None), (0, "ok", "release", "L", None)]
    records += [
        (1, "invoke", "owner", "L", None),
        (1, "ok", "owner", "L", {"holders": holders, "token": token}),
    ]
    return history(*records)


@pytest.mark.parametrize("model", ["mutex", "owned-mutex", "fenced-mutex"])
def test_owner_reads_must_see_the_current_holder(model: str) -> None:
    assert verdict(owner_history(["s0"], 4, released=False), model=model) == "valid"
    assert verdict(owner_history([], None, released=True), model=model) == "valid"
    # A follower that still reports the released holder: a stale read.
    assert verdict(owner_history(["s0"], 4, released=True), model=model) == "invalid"
    assert verdict(owner_history([], None, released=False), model=model) == "invalid"


def test_fenced_mutex_checks_the_token_an_owner_read_reports() -> None:
    wrong_token = owner_history(["s0"], 3, released=False)
    assert verdict(wrong_token, model="owned-mutex") == "valid"
    assert verdict(wrong_token, model="fenced-mutex") == "invalid"


def test_owner_read_naming_an_unknown_session_is_not_checked() -> None:
    assert verdict(owner_history(["s-elsewhere"], 4, released=True), model="owned-mutex") == "valid"


def test_owner_token_of_a_grant_whose_token_is_unknown_is_not_checked() -> None:
    ops = history(
        (0, "invoke", "acquire", "L", None),
        (0, "ok", "acquire", "L", 4, {"session": "s0"}),
        (0, "invoke", "release", "L", None),
        (0, "ok", "release", "L", None),
        (0, "invoke", "acquire", "L", None),
        (0, "info", "acquire", "L", None),
        (1, "invoke", "owner", "L", None),
        (1, "ok", "owner", "L", {"holders": ["s0"], "token": 9}),
    )
    assert verdict(ops, model="fenced-mutex") == "valid"


def test_without_minimisation_the_window_is_the_key_history_up_to_the_violation() -> None:
    ops = history(
        (0, "invoke", "write", "r", 1),
        (0, "ok", "write", "r", 1),
        (1, "invoke", "write", "r", 2),
        (1, "ok", "write", "r", 2),
        (0, "invoke", "read", "r", None),
        (0, "ok", "read", "r", 1),
    )
    minimal = check_linearizable(ops, CheckOptions(model="register"))
    assert minimal.window == (2, 5)  # the write of 2 and the read of 1
    whole = check_linearizable(ops, CheckOptions(model="register", minimize_window=False))
    assert whole.verdict == "invalid"
    assert whole.window == (0, 5)


def test_check_stops_at_the_first_key_that_is_not_linearizable() -> None:
    records: list[tuple[Any, ...]] = []
    for key, writes in (("a", 1), ("b", 3), ("c", 3)):  # keys are searched smallest first
        records += [(0, "invoke", "write", key, 1), (0, "ok", "write", key, 1)] * writes
    records += [(1, "invoke", "read", "a", None), (1, "ok", "read", "a", 3)]
    result = check_linearizable(history(*records), CheckOptions(model="kv"))
    assert result.verdict == "invalid"
    assert result.anomalies[0].key == "a"
    assert result.stats["keys_checked"] == 1
    assert result.stats["keys"] == 3
