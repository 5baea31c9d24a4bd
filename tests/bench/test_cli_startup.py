"""The CLI imports a subcommand's dependencies only when that subcommand runs (docs/architecture.md,
"Start-up"): ``lockbench check`` on a small history never loads SSH or the report libraries, and
``lockbench --help`` loads no subcommand at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

HEAVY = ("paramiko", "fabric", "invoke", "pandas", "numpy", "plotly", "rich")

# Runs the CLI in a fresh interpreter and prints which modules it loaded.
PROBE = """
import json, sys
from bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
log_level = sys.modules["logging"].root.level if "logging" in sys.modules else None
print(json.dumps({"code": code, "modules": sorted(sys.modules), "log_level": log_level}),
      file=sys.stderr)
"""


def probe(tmp_path: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(proc.stderr.strip().splitlines()[-1])
    return report


def loaded(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    report = probe(tmp_path, *args)
    return report["code"], set(report["modules"])


def tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_check_on_a_small_history_loads_no_ssh_and_no_report_libraries(tmp_path: Path) -> None:
    history = tmp_path / "two.jsonl"
    ops = [
        {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "acquire", "key": "a"},
        {"index": 1, "time": 5, "process": 0, "type": "ok", "f": "acquire", "key": "a", "value": 1},
    ]
    history.write_text("".join(json.dumps(op) + "\n" for op in ops))
    code, modules = loaded(tmp_path, "check", str(history))
    assert code == 0
    assert not tops(modules) & set(HEAVY), sorted(tops(modules) & set(HEAVY))
    assert "bench.runner" not in modules
    assert "bench.cluster" not in modules
    # The checker contract only (lockbench.checks), and no logging set-up: milliseconds each
    # (docs/performance.md, "CLI start-up").
    assert "lockbench.protocols" not in modules
    assert "logging" not in modules


def test_help_loads_no_subcommand(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "--help")
    assert code == 0
    assert not {m for m in modules if m.startswith("bench.commands.")}
    assert not tops(modules) & {*HEAVY, "yaml", "workloads", "nemesis", "reports"}


def test_verbose_still_configures_logging(tmp_path: Path) -> None:
    """``-v`` sets up DEBUG logging even when nothing the command loaded uses logging."""
    assert probe(tmp_path, "-v")["log_level"] == 10  # logging.DEBUG
