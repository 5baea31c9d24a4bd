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
import os
import sys
from dataclasses import dataclass
from functools import cache
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
METADATA_SUFFIXES: Final = (".dist-info", ".egg-info")


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """One ``name = module:attr`` line of a distribution's entry_points.txt."""

    name: str
    value: str
    group: str
    distribution: str

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        target: Any = importlib.import_module(module_name.strip())
        for part in attr.split("[", 1)[0].strip().split(".") if attr else ():
            target = getattr(target, part)
        return target


def _distribution_name(directory: str) -> str:
    """``Foo_Bar-1.0.dist-info`` -> ``foo-bar`` (names compare normalised, as pip does)."""
    stem = directory.rsplit(".", 1)[0].split("-", 1)[0]
    return stem.lower().replace("_", "-").replace(".", "-")


def _parse_entry_points(text: str, distribution: str) -> list[EntryPoint]:
    """The entry-points file format (an INI file: ``[group]`` then ``name = value`` lines)."""
    found: list[EntryPoint] = []
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
        elif "=" in line and group:
            name, _, value = line.partition("=")
            found.append(EntryPoint(name.strip(), value.strip(), group, distribution))
    return found


@cache
def _all_entry_points() -> tuple[EntryPoint, ...]:
    """Every entry point of the distributions on sys.path; the first distribution of a name wins.

    The same search importlib.metadata makes for distributions in directories, without importing
    it: its email and zip machinery is a quarter of ``lockbench check``'s start-up time."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for directory in names:
            if not directory.endswith(METADATA_SUFFIXES):
                continue
            distribution = _distribution_name(directory)
            if distribution in seen:
                continue
            seen.add(distribution)
            try:
                with open(
                    os.path.join(entry or ".", directory, "entry_points.txt"), encoding="utf-8"
                ) as fh:
                    text = fh.read()
            except OSError:
                continue
            found.extend(_parse_entry_points(text, distribution))
    return tuple(found)


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry in _all_entry_points():
        if entry.group == group:
            found.setdefault(entry.name, entry)
    return found


def plugin_names(group: str) -> list[str]:
    """The names registered in a group, in the order their packages declare them."""
    return list(_group(group))


def entry_point(group: str, name: str) -> EntryPoint | None:
    """The entry point a name stands for in a group, if an installed package declares it."""
    return _group(group).get(name)


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
    _all_entry_points.cache_clear()
    _group.cache_clear()
