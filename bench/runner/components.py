"""The parts a test file names, found by entry point: its backend and its workload.

Built-in and third-party plug-ins are found the same way (lockbench.plugins): a package that
declares a ``lockbench.backends`` or ``lockbench.workloads`` entry point adds one without touching
lockbench. A backend may also be named by a dotted path ``package.module:Class`` (docs/backends.md).
The backend class is built from the test's ``backend_options``: with
``Class.from_options(options)`` when it defines that classmethod, else ``Class(**options)``. A class
may declare ``runtimes`` (the runtimes it can run on); the default is every runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from lockbench.errors import ConfigError
from lockbench.plugins import (
    BACKENDS,
    WORKLOADS,
    has_plugin,
    load_dotted,
    load_plugin,
    plugin_names,
)
from lockbench.protocols import Backend
from workloads.base import BenchWorkload, WorkloadContext

BACKEND_METHODS: tuple[str, ...] = (
    "deploy",
    "start",
    "stop",
    "kill",
    "pause",
    "resume",
    "wipe",
    "leader",
    "log_files",
    "open_client",
)


def load_backend_class(spec: str) -> type[Any]:
    """The class a backend name or dotted path stands for; ConfigError says what is wrong."""
    if has_plugin(BACKENDS, spec):
        cls = load_plugin(BACKENDS, spec)
        path = spec
    elif ":" in spec:
        cls = load_dotted(spec, what="backend")
        path = spec
    else:
        raise ConfigError(
            f"unknown backend {spec!r}: use one of {sorted(plugin_names(BACKENDS))} "
            "or a dotted path 'package.module:Class'"
        )
    if not isinstance(cls, type):
        raise ConfigError(f"backend {spec!r}: {path} is not a class")
    missing = [m for m in BACKEND_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            f"backend {spec!r}: {path} does not implement the Backend protocol "
            f"(missing: {', '.join(missing)}; see docs/backends.md)"
        )
    return cls


def backend_runtimes(cls: type[Any]) -> tuple[str, ...] | None:
    """The runtimes a backend class declares it supports (None: any)."""
    runtimes = getattr(cls, "runtimes", None)
    return tuple(runtimes) if runtimes is not None else None


def create_backend(spec: str, options: Mapping[str, Any]) -> Backend:
    """Build the backend a test names; bad options become a ConfigError naming them."""
    cls = load_backend_class(spec)
    try:
        factory = getattr(cls, "from_options", None)
        backend = factory(dict(options)) if callable(factory) else cls(**dict(options))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"backend_options for {spec!r}: {exc}") from exc
    return cast(Backend, backend)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A workload's name, its options dataclass and its class (from its entry point)."""

    name: str
    options: type[Any]
    factory: type[BenchWorkload]
    default_checkers: tuple[str, ...]
    uses_resource: bool

    def build(self, options: Any, context: WorkloadContext) -> BenchWorkload:
        return self.factory(options, context)  # type: ignore[call-arg]


def workload_names() -> list[str]:
    return plugin_names(WORKLOADS)


def workload_spec(name: str) -> WorkloadSpec:
    """The workload a test names; ConfigError lists the known ones for an unknown name."""
    cls: Any = load_plugin(WORKLOADS, name)
    if not (isinstance(cls, type) and hasattr(cls, "options_class")):
        raise ConfigError(
            f"workload {name!r}: its entry point must name a workload class with "
            "name, options_class, default_checkers and uses_resource (docs/workloads.md)"
        )
    return WorkloadSpec(
        name,
        cls.options_class,
        cls,
        tuple(getattr(cls, "default_checkers", ())),
        bool(getattr(cls, "uses_resource", False)),
    )
