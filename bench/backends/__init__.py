"""Backends: the lock services the bench can test, by short name or by dotted path.

A test file names its backend either by a registered short name (``reference``, ``memory``) or by
a dotted path ``package.module:Class``, so users can test their own lock service without editing
lockbench (docs/backends.md). The class is built from the test's ``backend_options``: with
``Class.from_options(options)`` when it defines that classmethod, else ``Class(**options)``.
A class may declare ``runtimes`` (the runtimes it can run on); the default is every runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, cast

from bench.errors import ConfigError
from bench.protocols import Backend

# Short names -> dotted paths; imported only when used, so a backend's dependencies are optional.
REGISTERED_BACKENDS: Mapping[str, str] = {
    "reference": "bench.backends.reference:ReferenceBackend",
    "memory": "bench.backends.memory:MemoryBackend",
}
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


def resolve_backend_path(spec: str) -> str:
    """A short name's dotted path, or the spec itself if it already is one."""
    if spec in REGISTERED_BACKENDS:
        return REGISTERED_BACKENDS[spec]
    if ":" not in spec:
        raise ConfigError(
            f"unknown backend {spec!r}: use one of {sorted(REGISTERED_BACKENDS)} "
            "or a dotted path 'package.module:Class'"
        )
    return spec


def load_backend_class(spec: str) -> type[Any]:
    """Import the class a backend spec names; ConfigError says what could not be found."""
    path = resolve_backend_path(spec)
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"backend {spec!r}: a dotted path looks like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"backend {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    cls = module
    for part in attr.split("."):
        try:
            cls = getattr(cls, part)
        except AttributeError:
            raise ConfigError(
                f"backend {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
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
