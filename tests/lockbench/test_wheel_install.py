"""The built wheel is the whole product: installed into a fresh venv, ``lockbench run`` works from
an empty directory (the default test ships inside the package; the local runtime needs no root)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def source_copy(dest: Path) -> Path:
    """The checkout's own files (tracked or new, not ignored): a stale build/ directory in the
    checkout must not leak old modules into the wheel."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO, 60)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
@pytest.mark.timeout(600)  # a wheel build, a fresh venv and pip install, then a 10 s run
def test_the_wheel_installed_in_a_fresh_venv_runs_the_default_test(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    source = source_copy(tmp_path / "src")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        tmp_path,
        600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("lockbench-*.whl")

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    assert made.returncode == 0, made.stderr
    installed = run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path, 900)
    assert installed.returncode == 0, installed.stderr[-2000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    lockbench = str(venv / "bin" / "lockbench")
    result = run(
        [lockbench, "run", "--runtime", "local", "--time-limit", "10", "--no-progress"],
        empty,
        600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    latest = empty / "store" / "latest"
    results = json.loads((latest / "results.json").read_text())
    assert results["verdict"] == "valid"
    assert (latest / "report.html").is_file()
    where = run(
        [str(venv / "bin" / "python"), "-c", "import bench; print(bench.__file__)"], empty, 60
    )
    assert where.stdout.startswith(str(venv)), where  # the installed package, not the checkout
    run([lockbench, "cluster", "down", "--dir", ".clusters/default"], empty, 120)
