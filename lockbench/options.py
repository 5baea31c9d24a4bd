"""Options from plain data: one parser for test files and backend, workload, nemesis and
checker options.

Test files are plain data; every section that has options (the test itself, each workload, the
checkers) is a frozen dataclass, and this module checks a mapping against its fields: unknown keys,
wrong types and out-of-range values become an ``OptionError`` naming the key, which the config
loader turns into a ConfigError naming the file too. ``CheckOptions`` (docs/checkers.md) is parsed
here too, so ``lockbench check`` flags and a test file's ``checker_options`` fail the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from lockbench.errors import ConfigError

T = TypeVar("T")


class OptionError(ValueError):
    """A bad option: ``key`` is its dotted path (e.g. ``workload_options.locks``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def parse_options(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "") -> T:
    """Build ``cls`` (a dataclass) from ``data``, checking keys and types of every field."""
    prefix = f"{where}." if where else ""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise OptionError(where or "options", f"must be a mapping, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise OptionError(
            f"{prefix}{unknown[0]}", f"unknown key; known keys: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        values[name] = coerce(value, hints[name], f"{prefix}{name}")
    try:
        return cls(**values)
    except OptionError as exc:
        if prefix and not exc.key.startswith(prefix):
            raise OptionError(f"{prefix}{exc.key}", exc.reason) from None
        raise


def coerce(value: Any, hint: Any, key: str) -> Any:  # noqa: C901, PLR0912 - one branch per option type
    """Check ``value`` against a type hint, converting lists to tuples and ints to floats."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        errors = []
        for option in get_args(hint):
            try:
                return coerce(value, option, key)
            except OptionError as exc:
                errors.append(exc.reason)
        raise OptionError(key, f"expected {_describe(hint)}, got {_kind(value)} {value!r}")
    if hint is type(None):
        if value is None:
            return None
        raise OptionError(key, f"expected null, got {_kind(value)}")
    if hint is Any:
        return value
    if origin is Literal:
        if value in get_args(hint):
            return value
        choices = ", ".join(repr(c) for c in get_args(hint))
        raise OptionError(key, f"must be one of {choices}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(key, f"expected true or false, got {_kind(value)} {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise OptionError(key, f"expected an integer, got {_kind(value)} {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise OptionError(key, f"expected a number, got {_kind(value)} {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise OptionError(key, f"expected a string, got {_kind(value)} {value!r}")
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, list | tuple):
            raise OptionError(key, f"expected a list, got {_kind(value)} {value!r}")
        item_hint = args[0] if args else Any
        return tuple(coerce(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise OptionError(key, f"expected a mapping, got {_kind(value)} {value!r}")
        if any(not isinstance(k, str) for k in value):
            raise OptionError(key, "mapping keys must be strings")
        return dict(value)
    raise TypeError(f"parse_options: unsupported type hint {hint!r} for {key}")


def _describe(hint: Any) -> str:
    names = []
    for option in get_args(hint):
        if option is type(None):
            names.append("null")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def require(condition: bool, key: str, reason: str) -> None:
    """For ``__post_init__`` range checks: raise OptionError(key, reason) unless condition."""
    if not condition:
        raise OptionError(key, reason)


CrashedHolders = Literal["release", "hold"]


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """Documented in docs/checkers.md ("Options")."""

    # Linearizability
    model: str | None = None
    time_budget_s: float = 60.0
    memory_budget_mb: float = 1024.0
    knossos_nil_reads: bool = False
    failed_cas_observed: bool = False
    crashed_holders: CrashedHolders = "release"
    initial_value: Any = None
    minimize_window: bool = True
    # Lock checkers
    ttl: float | None = None
    failover: float = 5.0
    margin: float = 1.0
    counter_initial: int = 0
    max_gap: float | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> CheckOptions:
        """Validate names and types; raise ConfigError naming the option and what it accepts."""
        known = {f.name for f in fields(cls)}
        normalized = {str(k).replace("-", "_"): v for k, v in options.items()}
        unknown = sorted(set(normalized) - known)
        if unknown:
            raise ConfigError(
                f"unknown checker option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for name in ("time_budget_s", "memory_budget_mb", "failover", "margin"):
            if name in normalized:
                normalized[name] = _positive_number(name, normalized[name], allow_zero=True)
        for name in ("ttl", "max_gap"):
            if normalized.get(name) is not None:
                normalized[name] = _positive_number(name, normalized[name], allow_zero=False)
        for name in ("knossos_nil_reads", "failed_cas_observed", "minimize_window"):
            if name in normalized and not isinstance(normalized[name], bool):
                raise ConfigError(f"checker option {name} must be true or false")
        if normalized.get("crashed_holders", "release") not in ("release", "hold"):
            raise ConfigError("checker option crashed_holders must be 'release' or 'hold'")
        counter = normalized.get("counter_initial", 0)
        if not isinstance(counter, int) or isinstance(counter, bool):
            raise ConfigError("checker option counter_initial must be an integer")
        model = normalized.get("model")
        if model is not None and not isinstance(model, str):
            raise ConfigError("checker option model must be a model name")
        return cls(**normalized)


def _positive_number(name: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"checker option {name} must be a number of seconds/MiB, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"checker option {name} must be positive, got {value!r}")
    return float(value)
