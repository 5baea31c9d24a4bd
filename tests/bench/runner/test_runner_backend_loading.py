"""A user's own backend, named by a dotted path, runs without editing lockbench."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.runner.components import create_backend, load_backend_class
from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.errors import ConfigError
from tests.bench.runner.runner_support import write_test_file

# The minimal example of docs/backends.md, verbatim: a backend whose service lives in the bench.
USER_BACKEND = textwrap.dedent(
    '''
    """my_locks: a lock service for lockbench, loaded as my_locks:InProcessLocks."""

    from bench.backends.memory import MemoryLockClient, MemoryLockService


    class InProcessLocks:
        name = "my-locks"
        runtimes = ("none",)  # no nodes: the service runs inside the bench

        def __init__(self, fair: bool = True) -> None:
            self.fair = fair
            self.service = None

        def deploy(self, cluster): pass
        def start(self, node): pass
        def stop(self, node):
            if self.service is not None:
                self.service.shutdown()
        def kill(self, node): raise NotImplementedError("no process to kill")
        def pause(self, node): raise NotImplementedError("no process to pause")
        def resume(self, node): raise NotImplementedError("no process to resume")
        def wipe(self, node): self.service = None
        def leader(self, cluster): return None
        def log_files(self, node): return []

        async def open_client(self, cluster, node, *, ttl, process):
            if self.service is None:
                self.service = MemoryLockService()
            return MemoryLockClient(self.service, ttl=ttl, process=process)
    '''
)


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "my_locks.py").write_text(USER_BACKEND)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "my_locks:InProcessLocks"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_locks", None)


def test_a_dotted_path_backend_runs_a_whole_test(tmp_path: Path, user_module: str) -> None:
    path = write_test_file(tmp_path, backend=user_module, backend_options={"fair": True})
    config = load_test_config(path)
    assert config.runtime == "none"
    outcome = run_test(config, RunOptions(store=tmp_path / "store", live_progress=False))
    assert outcome.exit_code == 0
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert results["verdict"] == "valid"


def test_backend_options_are_the_constructors_keyword_arguments(user_module: str) -> None:
    backend = create_backend(user_module, {"fair": False})
    assert backend.name == "my-locks"
    assert vars(backend)["fair"] is False
    with pytest.raises(ConfigError, match="backend_options for 'my_locks:InProcessLocks'"):
        create_backend(user_module, {"colour": "red"})


def test_registered_names_resolve_to_their_classes() -> None:
    assert load_backend_class("memory").__name__ == "MemoryBackend"
    assert load_backend_class("bench.backends.memory:MemoryBackend").__name__ == "MemoryBackend"
