"""Suite-wide pytest setup: the two test lanes, and root-only tests skipping when not root.

Lanes: a test that starts a process (a subprocess, a fork, a lockd cluster, chromium, sshd, a
network namespace) is marked ``process``; ``scripts/test.sh`` runs the others first (``-m "not
process and not slow"``), then the process lane (``-m "process or slow"``). ``root`` tests are
process tests by definition. The marker is kept honest here: a test that starts a process without
it fails, naming the marker, so the fast lane cannot quietly grow slow (docs/development.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

PROCESS_MARKER_HELP = (
    "this test started a process ({what}) but is not marked `process`: add "
    "`pytestmark = pytest.mark.process` to its module (or @pytest.mark.process to the test), "
    "so it runs in the process lane, not the fast one"
)


class _ProcessWatch:
    """Records the processes started while a test not marked ``process`` runs."""

    def __init__(self) -> None:
        self.watching = False
        self.started: list[str] = []

    def saw(self, what: str) -> None:
        if self.watching:
            self.started.append(what)


_watch = _ProcessWatch()


def _install_watch() -> None:
    """Wrap subprocess.Popen and os.fork (what subprocess, asyncio subprocesses, multiprocessing
    and the snapshot child all go through) so the watch sees every process a test starts."""
    original_init: Callable[..., None] = subprocess.Popen.__init__
    original_fork = os.fork

    def popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        shown = args if isinstance(args, str | bytes) else " ".join(map(str, list(args)[:3]))
        _watch.saw(f"subprocess {str(shown).splitlines()[0][:80]}")
        original_init(self, args, *rest, **kwargs)

    def fork() -> int:
        _watch.saw("os.fork()")
        return original_fork()

    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
    os.fork = fork


def pytest_configure(config: pytest.Config) -> None:
    _install_watch()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.process)
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(
        reason="needs root (network namespaces, iptables, sshd per node); CI runs as root"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _watch.watching = item.get_closest_marker("process") is None
    _watch.started = []
    try:
        return (yield)
    finally:
        _watch.watching = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    if _watch.started:
        report = os.environ.get("LOCKBENCH_PROCESS_TESTS_FILE")
        if report:  # survey mode: list the tests that need the marker instead of failing
            with open(report, "a", encoding="utf-8") as out:
                out.write(f"{item.nodeid}\t{_watch.started[0]}\n")
        else:
            pytest.fail(PROCESS_MARKER_HELP.format(what=_watch.started[0]), pytrace=False)
    return result
