"""The resource-side fencing check refuses tokens lower than the highest accepted."""

from __future__ import annotations

import pytest

from reference_impl.fencing import FencingGuard, StaleToken


def test_lower_token_is_refused_after_a_higher_one() -> None:
    guard = FencingGuard()
    assert guard.check("db", 5).accepted
    assert guard.check("db", 5).accepted  # the current holder's repeated accesses
    assert guard.check("db", 9).accepted
    decision = guard.check("db", 5)
    assert not decision.accepted
    assert decision.highest == 9
    with pytest.raises(StaleToken, match="highest accepted 9"):
        guard.require("db", 8)


def test_keys_are_independent_and_marks_are_persisted() -> None:
    written: list[tuple[str, int]] = []
    guard = FencingGuard({"a": 3}, persist=lambda k, t: written.append((k, t)))
    assert not guard.check("a", 2).accepted
    assert guard.check("b", 1).accepted
    assert written == [("b", 1)]
    assert guard.highest("a") == 3
