"""A node that is just a directory and a port offset on this machine (the ``local`` runtime).

Commands run through ``bash -c`` as subprocesses, so the daemon code written for SSH nodes works
unchanged; files are copied instead of uploaded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from bench.cluster.inventory import SpecNode
from lockbench.protocols import CommandResult, NodeError


class LocalNode(SpecNode):
    """One node of the local runtime: servers bind 127.0.0.1 with ``spec.port_offset``."""

    # lockbench.protocols.on_control_host: this node's files are this machine's
    on_control_host: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"LocalNode({self.spec.name}, offset {self.spec.port_offset})"

    def run(self, command: str, *, timeout: float = 30.0, check: bool = True) -> CommandResult:
        try:
            completed = subprocess.run(
                ["bash", "-c", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeError(self.name, f"timed out after {timeout} s: {command}") from exc
        outcome = CommandResult(
            command=command,
            exit_code=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr,
        )
        if check and not outcome.ok:
            detail = outcome.stderr.strip() or outcome.stdout.strip()
            raise NodeError(
                self.name, f"command failed (exit {outcome.exit_code}): {command}: {detail}"
            )
        return outcome

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise NodeError(self.name, f"copy of {local} to {remote} failed: {exc}") from exc

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise NodeError(self.name, f"copy of {remote} to {local} failed: {exc}") from exc

    def close(self) -> None:
        """Nothing to close: kept so every node type can be closed alike."""
