"""The Wing-Gong-Lowe linearizability search (Lowe's variant with memoisation).

The required ops of one key (ok completions) form a doubly linked list of call and return entries
in real-time order. The search walks it: at a call it tries to apply the op to the model; if that
is legal and the pair (set of linearized ops, model state) is new, the op is linearized: its
entries are unlinked and the walk restarts at the head. Reaching a return entry means that op
cannot be placed before the ops after it, so the search first tries the optional ops invoked
before that point, then undoes the last choice.

Optional ops (info, unfinished, session expiries) may take effect any time after their call or
never, so they have no return entry: the search succeeds once every required op is placed. They
are kept out of the list and tried only when the required ops are stuck: the candidates at each
step are the same as in the textbook walk, but a long-dead info op is not retried after every
single linearization (on a 10,000-op key with 1% info ops that alone is a 20x saving).

Configurations are memoised, optionally with dominance: having placed fewer optional ops is never
worse, so a configuration is pruned when one with the same required ops and state but a subset of
its placed optional ops was explored (an ancestor still in progress counts: its other branches
cover this one's). Optional ops with the same effect are tried one at a time. Without these two a
few dozen pending info writes make the search exponential.

The set of linearized required ops is a frontier (every required op numbered below it is placed)
plus small bitsets, so memoising it costs the same at op 10 and at op 10,000. ``step`` must be a
pure function of (state, op): each op's transitions are tabled as states are met, so the model
runs once per (op, state).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from bench.checker import native as compiled
from bench.checker.budget import CHECK_EVERY_STEPS, Budget
from bench.checker.models import ILLEGAL
from bench.checker.native import NativeOps
from bench.checker.operations import LinOp

Step = Callable[[Hashable, LinOp], Hashable]
# Placements of optional ops compared per (required ops, state) for dominance; measured on
# 1,000-op histories with 15% info ops: unbounded lists made single steps cost ~20 us.
MEMO_PER_STATE = 64
# Marks a transition not computed yet (None is a model state).
_UNKNOWN: object = object()


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """The result for one key. For a failure, ``stuck`` is the op with the latest completion that
    blocked a partial linearization: no partial linearization got further in real time."""

    linearizable: bool
    steps: int
    cache_size: int
    stuck: int | None = None


def _pruned(seen: list[int], placed: int) -> bool:
    """False if the configuration must be skipped: seen with a subset of the placed optional ops
    (dominance). Only the latest MEMO_PER_STATE placements are compared: forgetting older ones
    prunes less, never wrongly, and keeps each step cheap."""
    unplaced = ~placed
    # A plain loop: measured 1.5-2.5x faster than all() over a generator (1-40 placements).
    for earlier in seen[-MEMO_PER_STATE:]:  # noqa: SIM110
        if not earlier & unplaced:
            return False
    return True


class StepLimitReached(Exception):
    """The search took ``max_steps`` steps; ``stuck`` is the furthest blocking op so far."""

    def __init__(self, stuck: int | None) -> None:
        super().__init__(f"step limit reached (furthest blocking op {stuck})")
        self.stuck = stuck


def _search_compiled(
    native: NativeOps,
    initial: Hashable,
    budget: Budget | None,
    what: str,
    max_steps: int | None,
    reuse_optional: bool,
    dominance: bool,
) -> SearchOutcome | None:
    """The compiled core's answer; None when it cannot represent this search."""
    start = native.state(initial)
    if start is None:
        return None

    def check() -> None:
        assert budget is not None
        budget.check(what)

    status, linearizable, steps, explored, stuck = compiled.run(
        native,
        start,
        None if budget is None else check,
        CHECK_EVERY_STEPS,
        max_steps,
        reuse_optional,
        dominance,
    )
    if status == compiled.STATUS_STEP_LIMIT:
        raise StepLimitReached(stuck)
    if status != compiled.STATUS_DONE:
        return None
    return SearchOutcome(linearizable, steps, explored, None if linearizable else stuck)


def search(  # noqa: C901, PLR0912, PLR0915 - the checker's hot loop: locals, no calls (docs/checkers.md)
    ops: Sequence[LinOp],
    step: Step,
    initial: Hashable,
    budget: Budget | None,
    what: str = "searching",
    max_steps: int | None = None,
    reuse_optional: bool = False,
    dominance: bool = True,
    interchangeable: Callable[[LinOp], Hashable] | None = None,
    native: NativeOps | None = None,
) -> SearchOutcome:
    """Decide whether ``ops`` (one key) is linearizable.

    With ``reuse_optional`` an optional op may take effect any number of times. That admits more
    histories than the real semantics, so "not linearizable" from it is a proof for the real
    question too, and its search space has no subsets of optional ops: the cheap refutation.
    Without ``dominance`` only identical configurations are pruned: a different exploration
    order that some histories need far fewer steps with (and others far more).

    ``interchangeable`` maps an optional op to a key; optional ops with equal keys must have the
    same effect on every state. Of those, only the earliest unplaced one is tried: once two are
    both invoked, neither has a deadline, so placing one or the other leads to the same futures
    (ten info writes of "3" are tried as one, not as 2^10 subsets).

    ``native`` is ``ops`` encoded for the compiled core (``native.encode`` with the same
    ``interchangeable``): the same walk in C, with the same outcome; without it, or when the core
    cannot represent the history, the search runs here.

    Raises BudgetExceeded when the budget runs out, and StepLimitReached after ``max_steps``
    steps (so a caller can try a cheaper refutation or the other pruning).
    """
    if native is not None:
        outcome = _search_compiled(
            native, initial, budget, what, max_steps, reuse_optional, dominance
        )
        if outcome is not None:
            return outcome
    required_ops = sorted(
        (i for i, op in enumerate(ops) if op.ret is not None), key=lambda i: ops[i].call
    )
    if not required_ops:
        return SearchOutcome(True, 0, 0)
    optional_ops = sorted(
        (i for i, op in enumerate(ops) if op.ret is None), key=lambda i: ops[i].call
    )
    optional_call = [ops[i].call for i in optional_ops]
    optional_count = len(optional_ops)
    # Bit mask of the earlier optional ops interchangeable with each one.
    twins_before = [0] * optional_count
    if interchangeable is not None:
        earlier_by_key: dict[Hashable, int] = {}
        for j, i in enumerate(optional_ops):
            sig = interchangeable(ops[i])
            twins_before[j] = earlier_by_key.get(sig, 0)
            earlier_by_key[sig] = twins_before[j] | (1 << j)

    events: list[tuple[int, int, int]] = []
    for number, i in enumerate(required_ops):
        op = ops[i]
        assert op.ret is not None
        events.append((op.call, 0, number))
        events.append((op.ret, 1, number))
    events.sort()
    size = len(events) + 1
    # Node 0 is the head sentinel; node j + 1 is events[j]. -1 ends the list.
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    position = [-1] * size
    # A call node holds its required op's number (call order); a return node -1 - that number.
    entry = [0] * size
    match = [0] * size
    call_node = [0] * len(required_ops)
    for node, (pos, ret, number) in enumerate(events, start=1):
        position[node] = pos
        entry[node] = -1 - number if ret else number
        if ret:
            match[call_node[number]] = node
        else:
            call_node[number] = node
    required = [ops[i] for i in required_ops]
    optional = [ops[i] for i in optional_ops]

    # Memo: (frontier, above, state) -> the sets of placed optional ops explored with it. A
    # configuration is skipped if an explored one placed a subset of its optional ops: that one
    # had every choice this one has (the unplaced optional ops are a superset) and failed.
    # Without dominance only identical configurations are skipped: one set of them.
    cache: dict[tuple[int, int, Hashable], list[int]] = {}
    visited: set[tuple[int, int, Hashable, int]] = set()
    # Each op's transitions, filled in as states are met: a search steps the same op from the
    # same few states again and again (measured: ~30% of the time went to model.step calls).
    required_moves: list[dict[Hashable, Hashable]] = [{} for _ in required]
    optional_moves: list[dict[Hashable, Hashable]] = [{} for _ in optional]
    explored = 0
    # (node, state, frontier, above, placed optional ops, optional index or -1 for a required op)
    stack: list[tuple[int, Hashable, int, int, int, int]] = []
    state = initial
    frontier = 0  # required ops numbered below this are all linearized
    above = 0  # bit k: required op frontier + k is linearized
    placed = 0  # bit j: optional op j is linearized
    remaining = len(required_ops)
    steps = 0
    furthest = -1
    stuck: int | None = None
    node = nxt[0]
    cursor = 0  # the next optional op to try at the current return entry
    while remaining:
        steps += 1
        if steps % CHECK_EVERY_STEPS == 0:
            if budget is not None:
                budget.check(what)
            if max_steps is not None and steps > max_steps:
                raise StepLimitReached(stuck)
        number = entry[node]
        if number >= 0:
            moves = required_moves[number]
            new_state = moves.get(state, _UNKNOWN)
            if new_state is _UNKNOWN:
                new_state = moves[state] = step(state, required[number])
            if new_state is not ILLEGAL:
                new_frontier = frontier
                new_above = above | (1 << (number - frontier))
                if new_above & 1:
                    ones = (~new_above & (new_above + 1)).bit_length() - 1
                    new_above >>= ones
                    new_frontier += ones
                if dominance:
                    configuration = (new_frontier, new_above, new_state)
                    seen = cache.get(configuration)
                    fresh = seen is None or _pruned(seen, placed)
                    if fresh:
                        if seen is None:
                            cache[configuration] = [placed]
                        else:
                            seen.append(placed)
                else:
                    visit = (new_frontier, new_above, new_state, placed)
                    fresh = visit not in visited
                    if fresh:
                        visited.add(visit)
                if fresh:
                    explored += 1
                    stack.append((node, state, frontier, above, placed, -1))
                    state, frontier, above = new_state, new_frontier, new_above
                    p, q = prv[node], nxt[node]
                    nxt[p] = q
                    prv[q] = p  # a call always has its return after it
                    r = match[node]
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    remaining -= 1
                    node = nxt[0]
                    cursor = 0
                    continue
            node = nxt[node]
            continue
        # A return entry: try the optional ops invoked before it (in call order; trying the ones
        # that make the blocked op legal first measured 3-5x slower), then undo the last choice.
        limit = position[node]
        j = cursor
        advanced = False
        while j < optional_count and optional_call[j] < limit:
            bit = 1 << j
            twins = twins_before[j]
            # Skip an op while an earlier interchangeable one is unplaced (it is tried instead).
            if (reuse_optional or not placed & bit) and not (
                twins and (reuse_optional or twins & ~placed)
            ):
                steps += 1
                moves = optional_moves[j]
                new_state = moves.get(state, _UNKNOWN)
                if new_state is _UNKNOWN:
                    new_state = moves[state] = step(state, optional[j])
                if new_state is not ILLEGAL:
                    now = placed if reuse_optional else placed | bit
                    if dominance:
                        configuration = (frontier, above, new_state)
                        seen = cache.get(configuration)
                        fresh = seen is None or _pruned(seen, now)
                        if fresh:
                            if seen is None:
                                cache[configuration] = [now]
                            else:
                                seen.append(now)
                    else:
                        visit = (frontier, above, new_state, now)
                        fresh = visit not in visited
                        if fresh:
                            visited.add(visit)
                    if fresh:
                        explored += 1
                        stack.append((node, state, frontier, above, placed, j))
                        state = new_state
                        placed = now
                        node = nxt[0]
                        cursor = 0
                        advanced = True
                        break
            j += 1
        if advanced:
            continue
        if node > furthest:
            furthest = node  # nodes are numbered in real-time order
            stuck = required_ops[-1 - number]
        if not stack:
            return SearchOutcome(False, steps, explored, stuck)
        node, state, frontier, above, placed, j = stack.pop()
        if j >= 0:
            cursor = j + 1  # resume the optional ops at the same return entry
            continue
        r = match[node]
        nxt[prv[r]] = r
        if nxt[r] != -1:
            prv[nxt[r]] = r
        remaining += 1
        nxt[prv[node]] = node
        prv[nxt[node]] = node
        node = nxt[node]
        cursor = 0
    return SearchOutcome(True, steps, explored)
