"""Helpers for the runner's tests: quick memory-backend test files on a free resource port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port


def write_test_file(directory: Path, name: str = "quick", **keys: Any) -> Path:
    """A memory-backend test file (fast, no cluster) with ``keys`` overriding the defaults."""
    data: dict[str, Any] = {
        "name": name,
        "backend": "memory",
        "workload": "mutex",
        "workload_options": {"locks": 2, "hold": 0.002, "think": 0.002, "acquire_timeout": 0.5},
        "time_limit": 1.0,
        "concurrency": 6,
        "op_timeout": 1.0,
        "ttl": 1.0,
        "seed": 11,
        "resource_port": free_port(),
    }
    data.update(keys)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
