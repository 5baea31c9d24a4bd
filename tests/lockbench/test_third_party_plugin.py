"""A package a user installs adds a backend, a workload, a checker and a report panel.

The example plug-in of docs/architecture.md (tests/plugins/lockbench-example) is installed the way
pip would leave it, as a module plus a ``.dist-info`` with its entry points, on a temporary
``PYTHONPATH``; then ``lockbench run`` and ``lockbench check`` find it like the built-ins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from lockbench.plugins import (
    KINDS,
    entry_point,
    forget_plugins,
    plugin_names,
)

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "lockbench-example"


def install_example(site: Path) -> None:
    """What ``pip install tests/plugins/lockbench-example`` leaves in site-packages."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site.mkdir(parents=True)
    shutil.copy(EXAMPLE / "lockbench_example.py", site)
    dist_info = site / f"lockbench_example-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {target}" for name, target in entries.items())
        lines.append("")
    (dist_info / "entry_points.txt").write_text("\n".join(lines))


def lockbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    install_example(tmp_path / "site")
    test = {
        "name": "plugin",
        "backend": "example-memory",
        "workload": "lock-cycle",
        "workload_options": {"locks": 2, "hold": 0.002},
        "time_limit": 2.0,
        "concurrency": 4,
        "op_timeout": 1.0,
        "ttl": 1.0,
        "seed": 5,
    }
    (tmp_path / "plugin.yaml").write_text(yaml.safe_dump(test))
    return tmp_path


def test_an_installed_plugin_runs_like_a_built_in_and_rechecks_the_same(plugin_dir: Path) -> None:
    run = lockbench(plugin_dir, "run", "plugin.yaml", "--store", "store", "--no-progress")
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((plugin_dir / "store" / "latest" / "results.json").read_text())
    assert results["verdict"] == "valid"
    own = results["checkers"]["released-what-it-held"]
    assert own["verdict"] == "valid"
    assert own["stats"]["acknowledged_releases"] > 0
    assert results["checkers"]["mutual-exclusion"]["verdict"] == "valid"
    report = (plugin_dir / "store" / "latest" / "report.html").read_text()
    assert '<section id="panel-grants-per-process"><h2>Grants per process</h2>' in report

    check = lockbench(plugin_dir, "check", "store/latest")
    assert check.returncode == 0, check.stderr[-2000:]
    rechecked = json.loads(check.stdout)
    assert rechecked["verdict"] == "valid"
    assert sorted(rechecked["checkers"]) == sorted(results["checkers"])


def test_an_unknown_name_lists_the_plugins_names_too(plugin_dir: Path) -> None:
    run = lockbench(plugin_dir, "run", "plugin.yaml", "--set", "workload=lock-cycles")
    assert run.returncode == 2
    assert "unknown workload" in run.stderr
    assert "lock-cycle" in run.stderr
    assert "mutex" in run.stderr  # the built-ins are listed beside it


def test_plugins_finds_what_importlib_metadata_finds() -> None:
    """lockbench.plugins reads entry_points.txt itself (start-up time): the same names and
    targets as the standard library's reader, group by group."""
    forget_plugins()
    for group in KINDS:
        expected = {ep.name: ep.value for ep in entry_points(group=group)}
        found = {name: entry_point(group, name) for name in plugin_names(group)}
        assert {name: ep.value for name, ep in found.items() if ep is not None} == expected
        assert expected  # every group has built-ins (the report's own sections are panels)
