"""Ops encoded as integers for the compiled search core (``_wgl_native``, built from C).

The pure-Python search in ``wgl.py`` is the reference; the compiled core walks the same way and
returns the same outcome (steps, cache size and stuck op included), held to that by property tests.
It runs only the built-in models, whose ``step`` it has written out as opcodes; each model turns a
``LinOp`` into (opcode, a, b) and a state into three integers. Anything it cannot represent (a
token beyond 64 bits, a NaN, a model with its own ``step``) leaves the search in Python.

``LOCKBENCH_PURE_PYTHON=1`` switches the compiled core off (for A/B measurements and tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from array import array
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from bench.checker.operations import LinOp

NativeOp: TypeAlias = tuple[int, int, int]
NativeState: TypeAlias = tuple[int, int, int]

# The compiled core is built at install time only where a C compiler is present
# (setup.py: an optional extension); without it the pure-Python search does everything.
COMPILED_CORE = "bench.checker._wgl_native"
_wgl_native: Any = (
    importlib.import_module(COMPILED_CORE) if importlib.util.find_spec(COMPILED_CORE) else None
)


class NativeModel(Protocol):
    """What the encoder needs of a model (bench.checker.models.Model is one): its step, the step
    the core has written out as opcodes, and how it encodes ops and states."""

    @property
    def step(self) -> Any: ...

    @property
    def native_step(self) -> Any: ...

    def native_op(self, op: LinOp, ids: Interner) -> NativeOp | None: ...

    def native_state(self, state: Hashable, ids: Interner) -> NativeState | None: ...


# Opcodes: the step functions in _wgl_native.c (keep the two lists in step).
OP_ILLEGAL = 0
OP_READ = 1
OP_READ_ANY = 2
OP_WRITE = 3
OP_CAS = 4
OP_CAS_FAILED = 5
OP_ACQUIRE = 6
OP_RELEASE_ANY = 7
OP_RELEASE_OWN = 8
OP_OWNER = 9
OP_F_ACQUIRE = 10
OP_F_RELEASE = 11
OP_F_OWNER = 12
# A token that is absent (None); real tokens must be above it and fit 64 bits.
NONE_VALUE = -(2**63)
_TOKEN_MAX = 2**63 - 1

STATUS_DONE = 0
STATUS_STEP_LIMIT = 1
STATUS_UNSUPPORTED = 2


class Unrepresentable(Exception):
    """A value the compiled core cannot compare the way Python does (the search stays in Python)."""


class Interner:
    """Equal values get equal integers (from 1; 0 means "nobody" to the lock models)."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[Hashable, int] = {}

    def id(self, value: Hashable) -> int:
        found = self._ids.get(value)
        if found is None:
            if isinstance(value, float) and value != value:
                raise Unrepresentable("NaN is not equal to itself")
            found = self._ids[value] = len(self._ids) + 1
        return found


def native_token(token: Any) -> int | None:
    """A token as the core stores it (NONE_VALUE: absent); None if it does not fit 64 bits."""
    if token is None:
        return NONE_VALUE
    if isinstance(token, int) and not isinstance(token, bool) and NONE_VALUE < token <= _TOKEN_MAX:
        return token
    return None


def available() -> bool:
    return _wgl_native is not None and not os.environ.get("LOCKBENCH_PURE_PYTHON")


@dataclass(slots=True)
class NativeOps:
    """One key's ops encoded for the core, and how to encode the states a search starts from."""

    table: array[int]
    model: NativeModel
    ids: Interner

    def state(self, state: Hashable) -> NativeState | None:
        try:
            return self.model.native_state(state, self.ids)
        except Unrepresentable:
            return None


def encode(
    ops: Sequence[LinOp],
    model: NativeModel,
    interchangeable: Callable[[LinOp], Hashable] | None,
) -> NativeOps | None:
    """The ops as the core's table (6 integers each), or None if the core cannot run them."""
    if not available() or type(model).step is not type(model).native_step:
        return None
    ids = Interner()
    signatures: dict[Hashable, int] = {}
    table: array[int] = array("q")
    extend = table.extend
    native_op = model.native_op
    try:
        for op in ops:
            code = native_op(op, ids)
            if code is None:
                return None
            ret = op.ret
            if ret is None:
                twin = -1
                if interchangeable is not None:
                    twin = signatures.setdefault(interchangeable(op), len(signatures))
                extend((op.call, -1, code[0], code[1], code[2], twin))
            else:
                extend((op.call, ret, code[0], code[1], code[2], -1))
    except Unrepresentable:
        return None
    return NativeOps(table, model, ids)


def run(
    native: NativeOps,
    initial: NativeState,
    check: Callable[[], None] | None,
    check_every: int,
    max_steps: int | None,
    reuse_optional: bool,
    dominance: bool,
) -> tuple[int, bool, int, int, int | None]:
    """Run the core: (status, linearizable, steps, explored, stuck op index or None)."""
    assert _wgl_native is not None
    status, linearizable, steps, explored, stuck = _wgl_native.search(
        native.table,
        initial,
        check,
        check_every,
        -1 if max_steps is None else max_steps,
        reuse_optional,
        dominance,
    )
    return status, bool(linearizable), steps, explored, None if stuck < 0 else stuck
