"""A brute-force linearizability oracle, straight from the definition, for property tests.

It tries every order of the ops that respects real time (an op may go next only if it was invoked
before every unplaced required op completed), with no memoisation and no linked lists, so it
shares nothing with the engine but the model's step function and the op conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from bench.checker.models import ILLEGAL
from bench.checker.operations import LinOp


def brute_force_linearizable(
    ops: Sequence[LinOp], step: Callable[[Hashable, LinOp], Hashable], initial: Hashable
) -> bool:
    required = frozenset(i for i, op in enumerate(ops) if op.ret is not None)

    def extend(placed: frozenset[int], state: Hashable) -> bool:
        left = required - placed
        if not left:
            return True
        horizon = min(ret for i in left if (ret := ops[i].ret) is not None)
        for i, op in enumerate(ops):
            if i in placed or op.call > horizon:
                continue
            following = step(state, op)
            if following is not ILLEGAL and extend(placed | {i}, following):
                return True
        return False

    return extend(frozenset(), initial)
