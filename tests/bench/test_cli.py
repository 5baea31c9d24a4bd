"""The three console scripts install and explain themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.cli import main


@pytest.mark.process
@pytest.mark.parametrize("script", ["lockbench", "lockd", "lockctl"])
def test_console_script_prints_useful_help(script: str) -> None:
    exe = shutil.which(script) or str(__import__("pathlib").Path(sys.executable).parent / script)
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    assert len(proc.stdout.splitlines()) > 5


def test_lockbench_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "cluster", "check", "report", "serve"):
        assert command in out


def test_lockbench_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
