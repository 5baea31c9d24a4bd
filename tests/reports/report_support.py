"""Helpers shared by the report tests: hand-written histories and the sample store's shape."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SampleStore:
    """A store with one run of each shape the report must handle."""

    root: Path
    valid: Path
    invalid: Path
    damaged: Path
    no_history: Path


def write_history(
    run_dir: Path, records: Sequence[dict[str, Any]], step_ns: int = 1_000_000
) -> Path:
    """Write records as history.jsonl, numbering them and spacing them ``step_ns`` apart."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "history.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i, record in enumerate(records):
            fh.write(json.dumps({"index": i, "time": i * step_ns, **record}) + "\n")
    return path
