"""Run one function per node in parallel threads and report every failure, not just the first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lockbench.errors import ClusterError
from lockbench.protocols import Node

T = TypeVar("T")


class NodesFailed(ClusterError):
    """One or more nodes failed an action; ``failures`` maps node name to its error."""

    def __init__(self, action: str, failures: dict[str, BaseException]) -> None:
        lines = "; ".join(f"{name}: {_strip(name, exc)}" for name, exc in sorted(failures.items()))
        super().__init__(f"{action} failed on {len(failures)} node(s): {lines}")
        self.failures = failures


def _strip(name: str, exc: BaseException) -> str:
    text = str(exc)
    return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text


def on_each_node(action: str, nodes: Sequence[Node], fn: Callable[[Node], T]) -> dict[str, T]:
    """``fn(node)`` for every node at once; raises NodesFailed naming each failed node."""
    results: dict[str, T] = {}
    failures: dict[str, BaseException] = {}
    if not nodes:
        return results
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="node") as pool:
        futures = {node.name: pool.submit(fn, node) for node in nodes}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # every node's error is reported together
                failures[name] = exc
    if failures:
        raise NodesFailed(action, failures)
    return results
