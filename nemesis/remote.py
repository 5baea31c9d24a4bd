"""Running the nemesis's commands on nodes: in parallel, serialised per node, with helpers.

Everything goes through ``Node.run`` (SSH on real runtimes). Long-lived helpers on a node (the
clock driver, the packet shaper) are started in the background with a pidfile in the node's data
directory named ``lockbench-*.pid`` and a marker in their command line, so a heal can find and stop
them even after the bench that started them died, without ever killing an unrelated process.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lockbench.protocols import CommandResult, Node

T = TypeVar("T")

HELPER_MARKER = "lockbench-helper"
HELPER_PIDFILE_GLOB = "lockbench-*.pid"
COMMAND_TIMEOUT = 20.0


class NodeLocks:
    """One lock per node so two faults never interleave their commands on the same node."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def lock(self, node: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(node, threading.Lock())


def on_nodes(nodes: Sequence[Node], action: Callable[[Node], T]) -> dict[str, T | Exception]:
    """Run ``action`` on every node in parallel; an exception is returned in place of a result."""
    if not nodes:
        return {}

    def guarded(node: Node) -> T | Exception:
        try:
            return action(node)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="nemesis") as pool:
        results = list(pool.map(guarded, nodes))
    return {node.name: result for node, result in zip(nodes, results, strict=True)}


def raise_first(results: dict[str, T | Exception]) -> dict[str, T]:
    """Turn the per-node results back into values, raising the first failure with its node."""
    values: dict[str, T] = {}
    errors = error_messages(results)
    if errors:
        raise NemesisActionError("; ".join(errors))
    for name, result in results.items():
        if not isinstance(result, Exception):
            values[name] = result
    return values


def error_messages(results: Mapping[str, object]) -> list[str]:
    """``node: reason`` for each failed node (without repeating a name the error already has)."""
    messages: list[str] = []
    for name, result in results.items():
        if isinstance(result, Exception):
            text = str(result) or type(result).__name__
            messages.append(text if text.startswith(f"{name}:") else f"{name}: {text}")
    return messages


class NemesisActionError(RuntimeError):
    """A fault could not be applied or removed on some node; the message names the node(s)."""


def run_checked(
    node: Node, command: str, what: str, *, timeout: float = COMMAND_TIMEOUT
) -> CommandResult:
    """Run a command; a non-zero exit becomes NemesisActionError saying what failed and why."""
    result = node.run(command, timeout=timeout, check=False)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.exit_code}"
        raise NemesisActionError(f"{node.name}: {what} failed: {reason}")
    return result


def helper_pidfile(node: Node, helper: str) -> str:
    return f"{node.data_dir}/lockbench-{helper}.pid"


def start_helper(node: Node, helper: str, source: str, args: Iterable[str]) -> int:
    """Start a stdlib-only Python program on the node in the background; returns its pid.

    The program's source travels in the command line (``python3 -c``) so nothing has to be
    installed on the node first; the marker argument lets heals recognise it.
    """
    pidfile = helper_pidfile(node, helper)
    log = f"{node.data_dir}/lockbench-{helper}.log"
    argv = ["python3", "-c", source, HELPER_MARKER, *args]
    # Separate lines: a trailing ``&`` would send a whole ``a && b`` list to the background.
    command = "\n".join(
        [
            f"mkdir -p {shlex.quote(node.data_dir)} || exit 1",
            stop_helper_command(pidfile),
            f"nohup setsid {shlex.join(argv)} </dev/null >{shlex.quote(log)} 2>&1 &",
            f"echo $! > {shlex.quote(pidfile)}",
            f"cat {shlex.quote(pidfile)}",
        ]
    )
    result = run_checked(node, command, f"starting {helper}")
    return int(result.stdout.strip().splitlines()[-1])


def stop_helper_command(pidfile: str) -> str:
    """Shell that stops the helper of a pidfile (TERM, then KILL after 3 s) and removes it."""
    return _stop_helper_shell(shlex.quote(pidfile))


def _stop_helper_shell(pidfile_expr: str) -> str:
    """``pidfile_expr`` is inserted as-is: a quoted path or a shell variable like ``"$p"``."""
    alive = f'grep -q {HELPER_MARKER} /proc/"$pid"/cmdline 2>/dev/null'
    return (
        f"{{ if [ -f {pidfile_expr} ]; then pid=$(cat {pidfile_expr}); "
        f'if {alive}; then kill "$pid" 2>/dev/null; i=0; '
        f"while {alive} && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; "
        f'if {alive}; then kill -9 "$pid"; fi; fi; rm -f {pidfile_expr}; fi; true; }}'
    )


def stop_all_helpers_command(data_dir: str) -> str:
    """Shell that stops every lockbench helper whose pidfile is in the data directory."""
    pattern = f"{shlex.quote(data_dir)}/{HELPER_PIDFILE_GLOB}"
    stop_one = _stop_helper_shell('"$p"')
    return f"for p in {pattern}; do {stop_one}; done"
