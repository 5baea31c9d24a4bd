"""Sequential specifications the linearizability search checks histories against.

A model is a small object, after Porcupine's: an initial state and ``step(state, op)`` that returns
the next state or ``ILLEGAL``. States are hashable so the search can memoise them. The semantics are
Jepsen's (docs/checkers.md): fail = did not happen, info = may have happened at any time after its
invocation or never, and a read's result is in its ok completion.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Final

from bench.checker.native import (
    OP_ACQUIRE,
    OP_CAS,
    OP_CAS_FAILED,
    OP_F_ACQUIRE,
    OP_F_OWNER,
    OP_F_RELEASE,
    OP_ILLEGAL,
    OP_OWNER,
    OP_READ,
    OP_READ_ANY,
    OP_RELEASE_ANY,
    OP_RELEASE_OWN,
    OP_WRITE,
    Interner,
    NativeOp,
    NativeState,
    native_token,
)
from bench.checker.operations import SESSION_EXPIRY, Conversion, LinOp, freeze
from lockbench.history import Call, Op, Process
from lockbench.options import CheckOptions


class ModelError(ValueError):
    """A history op the model cannot interpret (wrong value shape); names the op index."""


class _Illegal:
    """The one value ``step`` returns for a transition the specification forbids."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Final = _Illegal()
# A holder or value from before a window that is checked on its own (window minimisation).
OUTSIDE: Final = "<from before the window>"


class Model:
    """Base: how calls become model inputs, and the sequential specification."""

    name: str = ""
    operations: frozenset[str] = frozenset()
    is_lock: bool = False

    def __init__(self, options: CheckOptions) -> None:
        self.options = options

    def initial(self) -> Hashable:
        return None

    def prepare(self, history: Sequence[Op]) -> None:
        """Learn what conversions need from the whole history (lock models: session owners)."""

    def interchangeable(self, op: LinOp) -> Hashable:
        """A key equal for ops with the same effect on every state (the search tries one)."""
        return (op.process, op.f, op.arg, op.out, op.known, op.failed)

    def convert(self, call: Call) -> tuple[Conversion, bool] | None:
        """The model input for a call and whether it must be linearized; None drops the call."""
        raise NotImplementedError

    def step(self, state: Hashable, op: LinOp) -> Hashable:
        raise NotImplementedError

    def candidate_states(self, window: Sequence[LinOp], earlier: Sequence[LinOp]) -> list[Hashable]:
        """Every state (up to equivalence) a window could start in, given the ops invoked before
        it ends (``earlier``): minimising a counterexample must hold for all of them."""
        raise NotImplementedError

    # The compiled search (bench/checker/native.py) runs a model whose ``step`` it has written
    # out; None from either method (or a subclass with its own ``step``) keeps the search in
    # Python. Values go through ``ids`` so equal values get equal integers.
    native_step: Any = None

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None:
        return None

    def native_state(self, state: Hashable, ids: Interner) -> NativeState | None:
        return None


class _LockModel(Model):
    """Shared by the mutex models: conversions, and owner reads.

    An ok ``owner`` read names holder sessions; sessions map to processes through the ops that
    carry a ``session`` field (acquire completions). A read naming a session no op carries says
    nothing the model can check and is dropped; so are owner reads that failed or are unknown.
    """

    operations = frozenset({"acquire", "release", "owner"})
    is_lock = True

    def __init__(self, options: CheckOptions) -> None:
        super().__init__(options)
        self.session_process: dict[str, Process] = {}

    def prepare(self, history: Sequence[Op]) -> None:
        for op in history:
            if op.session is not None and op.is_client:
                self.session_process.setdefault(op.session, op.process)

    def convert(self, call: Call) -> tuple[Conversion, bool] | None:
        invoke = call.invoke
        f = invoke.f
        if f == "owner":
            return self._owner(call)
        if f == "acquire":
            value = invoke.value
            if isinstance(value, dict) and value.get("shared"):
                raise ModelError(
                    f"op {invoke.index}: shared acquires are outside the mutex models; "
                    "check this history with the lock checkers only"
                )
        completion = call.completion
        outcome = None if completion is None else completion.type
        if outcome == "fail":
            return None
        if outcome == "ok":
            assert completion is not None
            token = completion.value if f == "acquire" else None
            if token is not None and (not isinstance(token, int) or isinstance(token, bool)):
                raise ModelError(
                    f"op {completion.index}: acquire's ok value must be an integer "
                    f"fencing token or null, got {token!r}"
                )
            return Conversion(f, None, token, True), True
        return Conversion(f, None, None, False), False

    def _owner(self, call: Call) -> tuple[Conversion, bool] | None:
        if call.outcome != "ok" or call.completion is None:
            return None
        result = call.completion.value
        if not isinstance(result, dict) or not isinstance(result.get("holders"), list):
            raise ModelError(
                f"op {call.completion.index}: an owner read's ok value must be "
                f'{{"holders": [session...], "token": t}}, got {result!r}'
            )
        processes = []
        for session in result["holders"]:
            process = self.session_process.get(str(session))
            if process is None:
                return None  # a session no op of the history carries: nothing to check
            processes.append(process)
        token = result.get("token")
        if not isinstance(token, int) or isinstance(token, bool):
            token = None
        return Conversion("owner", None, (tuple(processes), token), True), True

    @staticmethod
    def native_holder(op: LinOp, ids: Interner) -> int:
        """The holder an owner read requires: 0 nobody, -1 nobody can (several holders)."""
        holders = op.out[0]  # type: ignore[index]
        if not holders:
            return 0
        return ids.id(holders[0]) if len(holders) == 1 else -1

    def native_state(self, state: Hashable, ids: Interner) -> NativeState | None:
        return (0 if state is None else ids.id(state), 0, 0)

    @staticmethod
    def owner_matches(holder: Hashable, op: LinOp) -> bool:
        """An owner read sees exactly the holder (one process, or none)."""
        read: tuple[tuple[Hashable, ...], Any] = op.out  # type: ignore[assignment]
        holders = read[0]
        if holder is None:
            return not holders
        return holders == (holder,)

    def holders(self, ops: Sequence[LinOp]) -> list[Hashable]:
        """Every holder a window could open with: nobody, each process the window names (as the
        one running an op, or in an owner read), and one stand-in for all other processes."""
        seen: dict[Hashable, None] = {None: None, OUTSIDE: None}
        for op in ops:
            seen[op.process] = None
            if op.f == "owner" and isinstance(op.out, tuple):
                for holder in op.out[0]:
                    seen[holder] = None
        return list(seen)


class MutexModel(_LockModel):
    """Knossos' mutex: acquire needs it free, release needs it held (by anyone).

    The state remembers who acquired last so a session expiry can tell whether it was that
    process's lock that expired, and an owner read who holds it; releases stay ownerless, as in
    Knossos.
    """

    name = "mutex"

    def step(self, state: Hashable, op: LinOp) -> Hashable:
        f = op.f
        if f == "acquire":
            return op.process if state is None else ILLEGAL
        if f == "release":
            return None if state is not None else ILLEGAL
        if f == SESSION_EXPIRY:
            return None if state == op.process else ILLEGAL
        if f == "owner":
            return state if self.owner_matches(state, op) else ILLEGAL
        return ILLEGAL

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None:
        f = op.f
        if f == "acquire":
            return (OP_ACQUIRE, ids.id(op.process), 0)
        if f == "release":
            return (OP_RELEASE_ANY, 0, 0)
        if f == SESSION_EXPIRY:
            return (OP_RELEASE_OWN, ids.id(op.process), 0)
        if f == "owner":
            return (OP_OWNER, self.native_holder(op, ids), 0)
        return (OP_ILLEGAL, 0, 0)

    def candidate_states(self, window: Sequence[LinOp], earlier: Sequence[LinOp]) -> list[Hashable]:
        return self.holders(window)


MutexModel.native_step = MutexModel.step


class OwnedMutexModel(_LockModel):
    """A mutex with an owner: a release by a process that does not hold the lock is illegal."""

    name = "owned-mutex"

    def step(self, state: Hashable, op: LinOp) -> Hashable:
        f = op.f
        if f == "acquire":
            return op.process if state is None else ILLEGAL
        if f == "release" or f == SESSION_EXPIRY:
            return None if state == op.process else ILLEGAL
        if f == "owner":
            return state if self.owner_matches(state, op) else ILLEGAL
        return ILLEGAL

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None:
        f = op.f
        if f == "acquire":
            return (OP_ACQUIRE, ids.id(op.process), 0)
        if f == "release" or f == SESSION_EXPIRY:
            return (OP_RELEASE_OWN, ids.id(op.process), 0)
        if f == "owner":
            return (OP_OWNER, self.native_holder(op, ids), 0)
        return (OP_ILLEGAL, 0, 0)

    def candidate_states(self, window: Sequence[LinOp], earlier: Sequence[LinOp]) -> list[Hashable]:
        return self.holders(window)


OwnedMutexModel.native_step = OwnedMutexModel.step


class FencedMutexModel(_LockModel):
    """An owned mutex whose grants carry tokens greater than every earlier grant's.

    State: (holder, highest token granted so far, the holder's token). An acquire whose token is
    unknown (info, or a backend without tokens) constrains nothing, and leaves the holder's token
    unknown, so an owner read then cannot be checked against it either.
    """

    name = "fenced-mutex"

    def initial(self) -> Hashable:
        return (None, None, None)

    def step(self, state: Hashable, op: LinOp) -> Hashable:
        triple: tuple[Any, Any, Any] = state  # type: ignore[assignment]
        holder, last, held_token = triple
        f = op.f
        if f == "acquire":
            if holder is not None:
                return ILLEGAL
            token = op.out
            if token is None:
                return (op.process, last, None)
            if last is not None and token <= last:
                return ILLEGAL
            return (op.process, token, token)
        if f == "release" or f == SESSION_EXPIRY:
            return (None, last, None) if holder == op.process else ILLEGAL
        if f == "owner":
            if not self.owner_matches(holder, op):
                return ILLEGAL
            read: tuple[Any, Any] = op.out  # type: ignore[assignment]
            seen_token = read[1]
            if holder is not None and seen_token is not None and held_token is not None:
                return state if seen_token == held_token else ILLEGAL
            return state
        return ILLEGAL

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None:
        f = op.f
        if f == "acquire":
            token = native_token(op.out)
            return None if token is None else (OP_F_ACQUIRE, ids.id(op.process), token)
        if f == "release" or f == SESSION_EXPIRY:
            return (OP_F_RELEASE, ids.id(op.process), 0)
        if f == "owner":
            seen = native_token(op.out[1])  # type: ignore[index]
            return None if seen is None else (OP_F_OWNER, self.native_holder(op, ids), seen)
        return (OP_ILLEGAL, 0, 0)

    def native_state(self, state: Hashable, ids: Interner) -> NativeState | None:
        triple: tuple[Any, Any, Any] = state  # type: ignore[assignment]
        holder, last, held = triple
        last_token, held_token = native_token(last), native_token(held)
        if last_token is None or held_token is None:
            return None
        return (0 if holder is None else ids.id(holder), last_token, held_token)

    def candidate_states(self, window: Sequence[LinOp], earlier: Sequence[LinOp]) -> list[Hashable]:
        # The lowest "highest token so far" (none) and an unknown holder's token allow the most;
        # checking them covers the rest.
        return [(h, None, None) for h in self.holders(window)]


FencedMutexModel.native_step = FencedMutexModel.step


class RegisterModel(Model):
    """A read/write register (Knossos' register); ``initial_value`` is its value before the test."""

    name = "register"
    operations = frozenset({"read", "write", "cas"})  # cas only to name it in an error
    allows_cas = False

    def initial(self) -> Hashable:
        return freeze(self.options.initial_value)

    def convert(self, call: Call) -> tuple[Conversion, bool] | None:
        f = call.invoke.f
        outcome = call.outcome
        if f == "read":
            if outcome != "ok":
                return None  # a read that failed or is unknown changes nothing
            assert call.completion is not None
            return Conversion("read", None, freeze(call.completion.value), True), True
        if f == "write":
            if outcome == "fail":
                return None
            arg = freeze(call.invoke.value)
            return Conversion("write", arg, arg, outcome == "ok"), outcome == "ok"
        if f == "cas":
            if not self.allows_cas:
                raise ModelError(
                    f"op {call.invoke.index}: the register model has no cas; "
                    "use --model cas-register"
                )
            value = call.invoke.value
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ModelError(
                    f"op {call.invoke.index}: a cas value must be [old, new], got {value!r}"
                )
            arg = (freeze(value[0]), freeze(value[1]))
            if outcome == "fail":
                if not self.options.failed_cas_observed:
                    return None
                return Conversion("cas", arg, None, True, failed=True), True
            return Conversion("cas", arg, arg, outcome == "ok"), outcome == "ok"
        return None

    def interchangeable(self, op: LinOp) -> Hashable:
        # A register's ops do not depend on the process that ran them.
        return (op.f, op.arg, op.out, op.known, op.failed)

    def step(self, state: Hashable, op: LinOp) -> Hashable:
        f = op.f
        if f == "read":
            if op.out == state or (op.out is None and self.options.knossos_nil_reads):
                return state
            return ILLEGAL
        if f == "write":
            return op.arg
        if f == "cas":
            cas: tuple[Any, Any] = op.arg  # type: ignore[assignment]
            old, new = cas
            if op.failed:
                return state if state != old else ILLEGAL
            return new if state == old else ILLEGAL
        return ILLEGAL

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None:
        f = op.f
        if f == "read":
            if op.out is None and self.options.knossos_nil_reads:
                return (OP_READ_ANY, 0, 0)
            return (OP_READ, ids.id(op.out), 0)
        if f == "write":
            return (OP_WRITE, ids.id(op.arg), 0)
        if f == "cas":
            cas: tuple[Any, Any] = op.arg  # type: ignore[assignment]
            old, new = cas
            if op.failed:
                return (OP_CAS_FAILED, ids.id(old), 0)
            return (OP_CAS, ids.id(old), ids.id(new))
        return (OP_ILLEGAL, 0, 0)

    def native_state(self, state: Hashable, ids: Interner) -> NativeState | None:
        return (ids.id(state), 0, 0)

    def candidate_states(self, window: Sequence[LinOp], earlier: Sequence[LinOp]) -> list[Hashable]:
        # The register only ever holds its initial value or a value some op wrote.
        seen: dict[Hashable, None] = {self.initial(): None}
        for op in earlier:
            if op.f == "cas" and not op.failed:
                cas: tuple[Any, Any] = op.arg  # type: ignore[assignment]
                seen[cas[1]] = None
            elif op.f == "write":
                seen[op.arg] = None
        return list(seen)


RegisterModel.native_step = RegisterModel.step


class CasRegisterModel(RegisterModel):
    """Knossos' cas-register: read, write, and cas with [old, new]."""

    name = "cas-register"
    operations = frozenset({"read", "write", "cas"})
    allows_cas = True


class KeyValueModel(CasRegisterModel):
    """A cas-register per key: the search checks each key on its own (P-compositionality)."""

    name = "kv"


MODELS: Final[dict[str, type[Model]]] = {
    m.name: m
    for m in (
        MutexModel,
        OwnedMutexModel,
        FencedMutexModel,
        RegisterModel,
        CasRegisterModel,
        KeyValueModel,
    )
}


def make_model(name: str, options: CheckOptions) -> Model:
    """The model called ``name``; raises KeyError for an unknown name (callers word the error)."""
    return MODELS[name](options)
