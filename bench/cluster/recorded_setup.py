"""Set-up that records its plan first: a cluster directory's state file is written before
anything is created, so a failure part-way (or a later ``lockbench cluster down``) undoes
exactly what was made. Shared by the netns runtime and the VM host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar


class RecordedState(Protocol):
    def save(self, cluster_dir: Path) -> None: ...


StateT = TypeVar("StateT", bound=RecordedState)
BuiltT = TypeVar("BuiltT")


def set_up_recorded(
    cluster_dir: Path,
    state: StateT,
    create: Callable[[Path, StateT], BuiltT],
    undo: Callable[[Path], object],
) -> BuiltT:
    """Save ``state`` in a private ``cluster_dir``, then ``create``; on any failure (Ctrl-C
    included) ``undo`` what the saved state names, and re-raise."""
    cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir.chmod(0o700)
    state.save(cluster_dir)
    try:
        return create(cluster_dir, state)
    except BaseException:
        undo(cluster_dir)
        raise
