"""Plug-ins are found, not listed: every backend, workload, nemesis, checker and report panel,
built-in or third-party, is a Python entry point in one of the groups below (as pytest finds its
plug-ins), declared in the providing package's metadata:

```toml
[project.entry-points."lockbench.backends"]
mylock = "mylock_bench:MyLockBackend"
```

A test file then names ``mylock`` like a built-in. A backend may also be named by a dotted path
``package.module:Attr`` (docs/backends.md), which is loaded the same way.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final

from lockbench.errors import ConfigError

BACKENDS: Final = "lockbench.backends"
WORKLOADS: Final = "lockbench.workloads"
NEMESES: Final = "lockbench.nemeses"
CHECKERS: Final = "lockbench.checkers"
REPORT_PANELS: Final = "lockbench.report_panels"

# What a group's members are, for error messages ("unknown workload 'x'; known: ...").
KINDS: Final = {
    BACKENDS: "backend",
    WORKLOADS: "workload",
    NEMESES: "nemesis fault",
    CHECKERS: "checker",
    REPORT_PANELS: "report panel",
}


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    # Reading the installed distributions' metadata costs milliseconds: once per group.
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=group):
        found.setdefault(entry.name, entry)  # the first distribution on sys.path wins
    return found


def plugin_names(group: str) -> list[str]:
    """The names registered in a group, in the order their packages declare them."""
    return list(_group(group))


def has_plugin(group: str, name: str) -> bool:
    return name in _group(group)


def unknown_plugin(group: str, name: str) -> ConfigError:
    """The error for a name no installed package provides, listing those that exist."""
    kind = KINDS.get(group, group)
    return ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(_group(group)))}")


def load_plugin(group: str, name: str) -> Any:
    """Import the object a plug-in name stands for; ConfigError names what is missing."""
    entry = _group(group).get(name)
    if entry is None:
        raise unknown_plugin(group, name)
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        kind = KINDS.get(group, group)
        raise ConfigError(f"{kind} {name!r} ({entry.value}) cannot be loaded: {exc}") from exc


def load_dotted(spec: str, *, what: str) -> Any:
    """Import ``package.module:Attr`` (nested attributes allowed); ConfigError says what failed."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {spec!r}: a dotted path looks like 'package.module:Class'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return target


def forget_plugins() -> None:
    """Re-read the entry points next time (after installing a plug-in into a running process)."""
    _group.cache_clear()
