"""Test-file keys from the command line, for the subcommands that run tests (run, validate,
nightly): the flags they share (``--store``, ``--runtime``, ``--inventory``, ``--set``) and how
the given ones become overrides of the test file's keys. One place, so the same flag reads the
same way everywhere and a bad ``--set`` is the same error everywhere."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lockbench.errors import ConfigError

# flag destination -> test-file key, for the cluster flags (run adds its own per-key flags)
CLUSTER_FLAG_KEYS: Mapping[str, str] = {"runtime": "runtime", "inventory": "inventory"}


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=Path("store"), help="default: ./store")


def add_cluster_flags(
    parser: argparse.ArgumentParser, runtimes: Sequence[str], inventory_help: str
) -> None:
    """``--runtime`` (one of ``runtimes``) and ``--inventory FILE``."""
    parser.add_argument("--runtime", choices=list(runtimes))
    parser.add_argument("--inventory", help=inventory_help)


def add_set_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE``, repeatable (read by ``set_items``)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def set_items(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as test-file keys (VALUE is YAML)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from exc
    return overrides


def flag_overrides(
    args: argparse.Namespace,
    flag_keys: Mapping[str, str],
    derived: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The flags of ``flag_keys`` that were given, as test-file keys, then the keys a command
    derives from its other flags (``derived``), then ``--set`` (last, so it wins)."""
    overrides: dict[str, Any] = {}
    for dest, key in flag_keys.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    overrides.update(derived or {})
    overrides.update(set_items(args.set))
    return overrides
