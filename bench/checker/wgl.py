"""The Wing-Gong-Lowe linearizability search (Lowe's variant with memoisation).

The history of one key is a doubly linked list of call and return entries in real-time order. The
search walks it: at a call it tries to apply the op to the model; if that is legal and the pair
(set of linearized ops, model state) is new, the op is linearized: its entries are unlinked and the
walk restarts at the head. Reaching a return entry means that op cannot be placed before the ops
that come after it, so the last choice is undone. The set of linearized ops is a frontier plus
small integer bitsets, so memoising it costs the same at op 10 and at op 10,000.

Optional ops (info, unfinished, session expiries) have no return entry, so they may be linearized
at any point after their call or never: the search succeeds once every required op is placed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from bench.checker.budget import CHECK_EVERY_STEPS, Budget
from bench.checker.models import ILLEGAL
from bench.checker.operations import LinOp

Step = Callable[[Hashable, LinOp], Hashable]


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """The result for one key. For a failure, ``stuck`` is the op with the latest completion that
    blocked a partial linearization (no partial one got further in real time), and
    ``linearized`` the ops that partial linearization had placed."""

    linearizable: bool
    steps: int
    cache_size: int
    stuck: int | None = None
    linearized: frozenset[int] = frozenset()


def search(
    ops: Sequence[LinOp],
    step: Step,
    initial: Hashable,
    budget: Budget | None,
    what: str = "searching",
) -> SearchOutcome:
    """Decide whether ``ops`` (one key) is linearizable; may raise BudgetExceeded."""
    events: list[tuple[int, int, int]] = []
    remaining = 0
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.ret is not None:
            events.append((op.ret, 1, i))
            remaining += 1
    if remaining == 0:
        return SearchOutcome(True, 0, 0)
    events.sort()
    size = len(events) + 1
    # Node 0 is the head sentinel; node j + 1 is events[j]. -1 ends the list.
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_return = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_node = [0] * len(ops)
    for j, (_, ret, i) in enumerate(events, start=1):
        is_return[j] = ret == 1
        op_of[j] = i
        if ret:
            match[call_node[i]] = j
        else:
            call_node[i] = j

    # The set of linearized ops, kept small so hashing it stays cheap on long histories:
    # required ops are numbered in call order and stored as a frontier (every required op below
    # it is linearized) plus the bits above it; optional ops have a bitset of their own.
    bit_of = [0] * len(ops)
    is_required = [op.ret is not None for op in ops]
    by_call = sorted(range(len(ops)), key=lambda i: ops[i].call)
    required_number = 0
    optional_number = 0
    for i in by_call:
        if is_required[i]:
            bit_of[i] = required_number
            required_number += 1
        else:
            bit_of[i] = 1 << optional_number
            optional_number += 1

    cache: set[tuple[int, int, int, Hashable]] = set()
    stack: list[tuple[int, Hashable, int, int, int]] = []
    state = initial
    frontier = 0  # required ops numbered below this are all linearized
    above = 0  # bit k: required op frontier + k is linearized
    optional = 0
    steps = 0
    furthest = -1
    stuck: int | None = None
    stuck_linearized: frozenset[int] = frozenset()
    node = nxt[0]
    while remaining:
        steps += 1
        if budget is not None and steps % CHECK_EVERY_STEPS == 0:
            budget.check(what)
        if not is_return[node]:
            i = op_of[node]
            new_state = step(state, ops[i])
            if new_state is not ILLEGAL:
                if is_required[i]:
                    new_frontier = frontier
                    new_above = above | (1 << (bit_of[i] - frontier))
                    if new_above & 1:
                        ones = (~new_above & (new_above + 1)).bit_length() - 1
                        new_above >>= ones
                        new_frontier += ones
                    new_optional = optional
                else:
                    new_frontier, new_above = frontier, above
                    new_optional = optional | bit_of[i]
                entry = (new_frontier, new_above, new_optional, new_state)
                if entry not in cache:
                    cache.add(entry)
                    stack.append((node, state, frontier, above, optional))
                    state = new_state
                    frontier, above, optional = new_frontier, new_above, new_optional
                    # Unlink the call and its return.
                    p, q = prv[node], nxt[node]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    r = match[node]
                    if r:
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        if q != -1:
                            prv[q] = p
                        remaining -= 1
                    node = nxt[0]
                    continue
            node = nxt[node]
            continue
        # A return entry: its op was not linearized before the ops after it. Undo the last choice.
        if node > furthest:
            furthest = node  # nodes are numbered in real-time order
            stuck = op_of[node]
            stuck_linearized = frozenset(op_of[s] for s, *_ in stack)
        if not stack:
            return SearchOutcome(False, steps, len(cache), stuck, stuck_linearized)
        node, state, frontier, above, optional = stack.pop()
        r = match[node]
        if r:
            nxt[prv[r]] = r
            if nxt[r] != -1:
                prv[nxt[r]] = r
            remaining += 1
        nxt[prv[node]] = node
        if nxt[node] != -1:
            prv[nxt[node]] = node
        node = nxt[node]
    return SearchOutcome(True, steps, len(cache))
