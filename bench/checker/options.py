"""The options every checker reads, parsed once from a plain mapping (CLI flags or test.yaml).

Unknown option names are errors, so a typo never silently turns a check off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from bench.errors import ConfigError

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
