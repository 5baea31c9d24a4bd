"""The linearizability checker: split the history per key, search each key, explain a failure.

Keys are independent (P-compositionality: a history is linearizable iff every key's sub-history
is), so each is searched on its own and the check stops at the first key that is not. A failure is
explained by the smallest window of that key's history that is non-linearizable from every state
the key could have been in when the window opened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.checker.budget import Budget, BudgetExceeded
from bench.checker.models import MODELS, Model, ModelError, make_model
from bench.checker.native import NativeOps, encode
from bench.checker.operations import LinOp, calls_by_key, lin_op, session_expiries
from bench.checker.partition import merge_results
from bench.checker.shared_searches import lookup, remember
from bench.checker.wgl import SearchOutcome, StepLimitReached, search
from lockbench.checks import Anomaly, CheckResult
from lockbench.errors import ConfigError
from lockbench.history import Call, Op, PairedHistory, Process
from lockbench.options import CheckOptions

# Window minimisation tries at most this many start points (each a small search) before falling
# back to the whole key history; enough for any window a person would want to read.
MAX_WINDOW_STARTS = 200
# The first step limit of a key's search, per op, before trying the relaxed refutation (valid
# histories take 2-10 steps per op).
FIRST_STEP_LIMIT_PER_OP = 100
# A window search that needs more steps than this is treated as "no proof here".
WINDOW_STEP_LIMIT = 50_000
# Anomalies list at most this many ops; a report cannot draw more usefully.
MAX_ANOMALY_OPS = 64


def infer_model(history: Sequence[Op]) -> str:
    """A model for histories that do not name one: locks if there are lock ops, else registers."""
    fs = {op.f for op in history if op.is_client}
    if fs & {"acquire", "release", "owner"}:
        tokens = any(
            op.f == "acquire" and op.type == "ok" and isinstance(op.value, int) for op in history
        )
        return "fenced-mutex" if tokens else "owned-mutex"
    if "cas" in fs:
        return "cas-register"
    return "register"


def resolve_model(name: str | None, history: Sequence[Op], options: CheckOptions) -> Model:
    chosen = name or infer_model(history)
    try:
        return make_model(chosen, options)
    except KeyError:
        raise ConfigError(
            f"unknown model {chosen!r}; choose one of {', '.join(sorted(MODELS))}"
        ) from None


def paired(history: PairedHistory | Sequence[Op]) -> PairedHistory:
    """The paired history (pairing a plain op list, for callers outside the pipeline)."""
    return history if isinstance(history, PairedHistory) else PairedHistory.of(history)


def ops_by_key(
    history: PairedHistory | Sequence[Op], model: Model
) -> dict[str | None, list[LinOp]]:
    """Each key's operations as the model sees them (session expiries added for lock models)."""
    return {key: convert_key(key_calls, model) for key, key_calls in calls_per_key(history, model)}


@dataclass(frozen=True, slots=True)
class KeyCalls:
    """One key's calls and the session expiries attached to it, before conversion."""

    calls: list[Call]
    expiries: list[LinOp]

    def __len__(self) -> int:
        return len(self.calls) + len(self.expiries)


def calls_per_key(
    history: PairedHistory | Sequence[Op], model: Model
) -> list[tuple[str | None, KeyCalls]]:
    """Each key's calls and expiries, in the history's key order (conversion comes later, a key
    at a time, so a big history never holds every key's converted ops at once)."""
    history = paired(history)
    model.prepare(history.whole_sample)
    by_key = calls_by_key(history.calls, model.operations)
    expiries: dict[str | None, list[LinOp]] = {}
    if model.is_lock and model.options.crashed_holders == "release":
        expiries = expiries_by_key(history.calls, expiry_points(history))
    return [(key, KeyCalls(calls, expiries.get(key, []))) for key, calls in by_key.items()]


def expiry_points(history: PairedHistory) -> dict[Process, list[LinOp]]:
    """Every process's session expiry points; for a group of keys, those of the whole history
    (a process's crash on one key may release its locks on all), computed once per history."""
    whole = history.whole
    if whole is None:
        return session_expiries(history.calls, history.end_index, history.end_time)
    points: dict[Process, list[LinOp]] | None = whole.memo.get(_EXPIRY_POINTS)
    if points is None:
        points = whole.memo[_EXPIRY_POINTS] = session_expiries(
            whole.expiry_calls, whole.end_index, whole.end_time, record_times=whole.record_times
        )
    return points


_EXPIRY_POINTS = "session-expiry-points"


def expiries_by_key(
    calls: Sequence[Call], expiry_points: Mapping[Process, Sequence[LinOp]]
) -> dict[str | None, list[LinOp]]:
    """Each key's session expiries: those of processes that may hold its lock at the expiry
    point (their last acquire or release of the key before it was an acquire that did not fail,
    or a release that did not succeed). Attaching only these keeps the search from trying
    hopeless expiries. Per key, processes come in the order of their first acquire or release
    of it, each with its expiries in order.

    One walk over each expiring process's own calls, all keys at once (per key it was a walk
    over every call of the key: most processes of a long history retire at some point)."""
    own: dict[Process, list[Call]] = {p: [] for p in expiry_points}
    for call in calls:
        invoke = call.invoke
        if invoke.f in _HOLDING_OPS and invoke.process in own:
            own[invoke.process].append(call)
    found: dict[str | None, list[tuple[int, int, LinOp]]] = {}
    for process, own_calls in own.items():
        if not own_calls:
            continue
        first: dict[str | None, int] = {}
        for call in own_calls:
            first.setdefault(call.invoke.key, call.invoke.index)
        last: dict[str | None, Call] = {}
        walked = 0
        for number, expiry in enumerate(expiry_points[process]):
            point = expiry.invoke_index
            while walked < len(own_calls) and own_calls[walked].invoke.index <= point:
                last[own_calls[walked].invoke.key] = own_calls[walked]
                walked += 1
            for key, previous in last.items():
                if _may_hold(previous):
                    found.setdefault(key, []).append((first[key], number, expiry))
    return {
        key: [e for *_, e in sorted(items, key=lambda i: i[:2])] for key, items in found.items()
    }


_HOLDING_OPS = frozenset({"acquire", "release"})


def _may_hold(call: Call) -> bool:
    """After this call (its last on the key) the process may hold the key's lock."""
    f = call.invoke.f
    completion = call.completion
    outcome = None if completion is None else completion.type
    return (f == "acquire" and outcome != "fail") or (f == "release" and outcome != "ok")


def convert_key(key_calls: KeyCalls, model: Model) -> list[LinOp]:
    """The key's ops as the model sees them; ConfigError if a call does not fit the model."""
    ops: list[LinOp] = []
    convert = model.convert
    try:
        for call in key_calls.calls:
            converted = convert(call)
            if converted is not None:
                conv, required = converted
                ops.append(lin_op(call, conv, required=required))
    except ModelError as exc:
        raise ConfigError(f"history does not fit model {model.name}: {exc}") from exc
    ops.extend(key_calls.expiries)
    return ops


@dataclass(frozen=True, slots=True)
class KeyFailure:
    """A key that is not linearizable: its ops, the op no order got past, the window shown."""

    key: str | None
    ops: tuple[LinOp, ...]
    stuck: LinOp
    window_ops: tuple[LinOp, ...]


def check_linearizable(
    history: PairedHistory | Sequence[Op],
    options: CheckOptions,
    *,
    checker: str = "linearizable",
    model_name: str | None = None,
    budget: Budget | None = None,
) -> CheckResult:
    """Search every key; invalid at the first key that fails, unknown if the budget runs out.

    A search another checker already ran on the same paired history, model and options is
    reused instead of run again (bench.checker.shared_searches)."""
    history = paired(history)
    model = resolve_model(model_name or options.model, history.whole_sample, options)
    shared = lookup(history, model.name, options, checker)
    if shared is not None:
        return shared
    result = _search_keys(history, options, checker, model, budget)
    remember(history, model.name, options, result)
    return result


def _search_keys(
    history: PairedHistory,
    options: CheckOptions,
    checker: str,
    model: Model,
    budget: Budget | None,
) -> CheckResult:
    started = time.monotonic()
    budget = budget or Budget.start(options.time_budget_s, options.memory_budget_mb)
    keys = calls_per_key(history, model)
    # Smallest keys first (by calls and expiries), each converted only when its turn comes.
    keys.sort(key=lambda item: len(item[1]))
    stats: dict[str, Any] = {"model": model.name, "keys": len(keys), "keys_checked": 0}
    total_steps = 0
    total_ops = 0
    largest_cache = 0
    for key, key_calls in keys:
        ops = convert_key(key_calls, model)
        total_ops += len(ops)
        try:
            outcome, refuted = _search_or_refute(key, ops, model, budget)
        except BudgetExceeded as exc:
            stats.update(steps=total_steps, seconds=round(time.monotonic() - started, 3))
            return CheckResult(
                checker,
                "unknown",
                stats=stats,
                reason=f"{exc.reason} ({stats['keys_checked']} of {len(keys)} keys checked)",
            )
        total_steps += outcome.steps
        largest_cache = max(largest_cache, outcome.cache_size)
        stats["keys_checked"] += 1
        if refuted is not None:
            stats.update(
                steps=total_steps,
                refuted_by_window=True,
                seconds=round(time.monotonic() - started, 3),
            )
            return _invalid(checker, model, refuted, stats)
        if not outcome.linearizable:
            assert outcome.stuck is not None
            failure = _explain(key, ops, ops[outcome.stuck], model, options, budget)
            stats.update(
                steps=total_steps,
                largest_cache=largest_cache,
                seconds=round(time.monotonic() - started, 3),
            )
            return _invalid(checker, model, failure, stats)
    stats.update(
        ops=total_ops,
        steps=total_steps,
        largest_cache=largest_cache,
        seconds=round(time.monotonic() - started, 3),
    )
    return CheckResult(checker, "valid", stats=stats)


def _search_or_refute(
    key: str | None, ops: Sequence[LinOp], model: Model, budget: Budget
) -> tuple[SearchOutcome, KeyFailure | None]:
    """The exact search, with a cheap refutation when it runs long.

    First the search with plain memoisation runs with a step limit (it is the fastest on most
    histories). Past the limit, the relaxed search runs (info ops may take effect more than once:
    no subsets of them, polynomial); if even that finds no linearization, the history has none.
    Proving a long history non-linearizable otherwise means exhausting every configuration before
    the violation, subsets of pending info ops included. Last, the search with dominance pruning
    runs, bounded only by the budget (measured: it decides the histories with many pending info
    ops that plain memoisation cannot, and is slower on some others).
    """
    what = f"checking key {key!r}"
    limit = FIRST_STEP_LIMIT_PER_OP * len(ops) + 10_000
    native = encode(ops, model, model.interchangeable)
    try:
        first = search(
            ops,
            model.step,
            model.initial(),
            budget,
            what,
            limit,
            dominance=False,
            interchangeable=model.interchangeable,
            native=native,
        )
        return first, None
    except StepLimitReached:
        pass
    relaxed = search(
        ops,
        model.step,
        model.initial(),
        budget,
        what,
        reuse_optional=True,
        interchangeable=model.interchangeable,
        native=native,
    )
    if not relaxed.linearizable:
        assert relaxed.stuck is not None
        stuck = ops[relaxed.stuck]
        found = smallest_window(ops, stuck, model, budget)
        end = stuck.ret
        window = (
            found.ops
            if found is not None
            else tuple(op for op in ops if end is None or op.call < end)
        )
        return relaxed, KeyFailure(key, tuple(ops), stuck, window)
    exact = search(
        ops,
        model.step,
        model.initial(),
        budget,
        what,
        interchangeable=model.interchangeable,
        native=native,
    )
    return exact, None


def _explain(
    key: str | None,
    ops: Sequence[LinOp],
    stuck: LinOp,
    model: Model,
    options: CheckOptions,
    budget: Budget,
) -> KeyFailure:
    assert stuck.ret is not None
    end = stuck.ret
    # Without a smaller proof, the window is everything up to the point no order got past.
    window = tuple(
        op if op.ret is not None and op.ret <= end else _optional(op) for op in ops if op.call < end
    )
    if options.minimize_window:
        # Out of budget while minimising: keep the whole key history as the window.
        with contextlib.suppress(BudgetExceeded):
            found = smallest_window(ops, stuck, model, budget)
            window = found.ops if found is not None else window
    return KeyFailure(key, tuple(ops), stuck, window)


@dataclass(frozen=True, slots=True)
class Window:
    """A counterexample: ``ops`` are not linearizable from any of ``states``, which cover every
    state the key could be in when the window opens."""

    ops: tuple[LinOp, ...]
    states: tuple[Hashable, ...]


def smallest_window(
    ops: Sequence[LinOp],
    stuck: LinOp,
    model: Model,
    budget: Budget,
    max_starts: int = MAX_WINDOW_STARTS,
) -> Window | None:
    """The latest-starting window ending at ``stuck``'s completion that no start state explains.

    A window keeps the ops invoked inside it, with ops that complete after its end made optional,
    and every op still open when it starts, as optional (an info op may take effect inside it).
    Only the ops that completed before it opens are left out; if there are none, the window
    starts from the initial state.
    """
    assert stuck.ret is not None
    end = stuck.ret
    starts = sorted({op.call for op in ops if op.call <= stuck.call and op.ret is not None})
    earlier = [op for op in ops if op.call < end]
    completions = sorted(op.ret for op in ops if op.ret is not None)
    for start in reversed(starts[-max_starts:]):
        sub: list[LinOp] = []
        for op in ops:
            if start <= op.call < end:
                sub.append(op if op.ret is not None and op.ret <= end else _optional(op))
            elif op.call < start and (op.ret is None or op.ret > start) and op.call < end:
                sub.append(_optional(op))
        before = completions and completions[0] <= start
        states = model.candidate_states(sub, earlier) if before else [model.initial()]
        native = encode(sub, model, None)
        if all(
            not _window_linearizable(sub, model, state, budget, True, native) for state in states
        ) or all(
            not _window_linearizable(sub, model, state, budget, False, native) for state in states
        ):
            return Window(tuple(sorted(sub, key=lambda o: o.call)), tuple(states))
    return None


def _window_linearizable(
    sub: Sequence[LinOp],
    model: Model,
    state: Hashable,
    budget: Budget,
    relaxed: bool,
    native: NativeOps | None,
) -> bool:
    """Whether a window is linearizable from ``state`` (``relaxed``: info ops may repeat, a
    cheaper and still sound refutation); a window too hard to decide quickly counts as
    linearizable (no proof), so minimisation stays cheap."""
    try:
        what = "minimising the counterexample"
        limit = WINDOW_STEP_LIMIT
        outcome = search(
            sub, model.step, state, budget, what, limit, reuse_optional=relaxed, native=native
        )
        return outcome.linearizable
    except StepLimitReached:
        return True


def _optional(op: LinOp) -> LinOp:
    if op.ret is None:
        return op
    return LinOp(
        op.process,
        op.call,
        None,
        op.f,
        op.arg,
        op.out,
        op.known,
        op.invoke_index,
        op.completion_index,
        op.time_start,
        op.time_end,
        op.failed,
    )


def _invalid(
    checker: str, model: Model, failure: KeyFailure, stats: Mapping[str, Any]
) -> CheckResult:
    stuck = failure.stuck
    window = failure.window_ops
    assert stuck.completion_index is not None
    first = min(op.invoke_index for op in window if op.call >= _window_start(window, stuck))
    indices = sorted({op.invoke_index for op in window} | {stuck.completion_index})
    explanation = (
        f"{stuck.describe()} (ops {stuck.invoke_index}-{stuck.completion_index}) cannot be "
        f"linearized on key {failure.key!r} under the {model.name} model: no order of the "
        f"{len(window)} ops in the window that respects real time explains its result"
    )
    anomaly = Anomaly(
        kind="nonlinearizable",
        explanation=explanation,
        op_indices=tuple(indices[-MAX_ANOMALY_OPS:]),
        key=failure.key,
        processes=tuple(sorted({op.process for op in window}, key=str)),
        time_start=min(op.time_start for op in window),
        time_end=stuck.time_end,
    )
    result_stats = dict(stats)
    result_stats["window_ops"] = len(window)
    return CheckResult(
        checker,
        "invalid",
        anomalies=(anomaly,),
        stats=result_stats,
        window=(first, stuck.completion_index),
    )


def _window_start(window: Sequence[LinOp], stuck: LinOp) -> int:
    required = [op.call for op in window if op.ret is not None]
    return min(required) if required else stuck.call


class LinearizableChecker:
    """``linearizable``: the whole history against one model (``model`` option, else inferred)."""

    name = "linearizable"
    # valid needs a lock or register op that succeeded (bench/checking.py, require_evidence)
    requires = ("acquire", "release", "owner", "read", "write", "cas")

    def check(self, history: PairedHistory, options: CheckOptions) -> CheckResult:
        return check_linearizable(history, options)

    def merge(self, results: Sequence[CheckResult]) -> CheckResult:
        """Keys are independent: invalid if a group's key is, the first such key shown."""
        return merge_results(self.name, results, max_anomalies=1)
