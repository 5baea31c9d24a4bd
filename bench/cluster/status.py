"""What ``lockbench cluster status`` shows: each node, whether it answers, and what runs on it."""

from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lockbench.errors import BenchError
from lockbench.protocols import Cluster, Node, NodeError


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    name: str
    pid: int
    state: str  # "running", "paused" or "dead" (stale pidfile)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    address: str
    reachable: bool
    latency_ms: float | None
    error: str | None
    daemons: tuple[DaemonStatus, ...]


def _daemons_command(node: Node) -> str:
    return (
        f'for f in {shlex.quote(node.data_dir)}/*.pid; do [ -e "$f" ] || continue; '
        'pid=$(cat "$f" 2>/dev/null); '
        'st=$(sed -n "s/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p" "/proc/$pid/status" 2>/dev/null); '
        'echo "$(basename "$f" .pid) ${pid:-0} ${st:-X}"; done'
    )


def node_status(node: Node) -> NodeStatus:
    started = time.monotonic()
    try:
        result = node.run(_daemons_command(node), timeout=15, check=False)
    except (NodeError, BenchError) as exc:
        return NodeStatus(node.name, node.address, False, None, str(exc), ())
    latency = (time.monotonic() - started) * 1000
    daemons = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        state = {"T": "paused", "X": "dead", "Z": "dead"}.get(parts[2], "running")
        daemons.append(DaemonStatus(parts[0], int(parts[1]), state))
    return NodeStatus(node.name, node.address, True, latency, None, tuple(daemons))


def cluster_status(cluster: Cluster) -> list[NodeStatus]:
    """Every node's status, gathered in parallel; an unreachable node is reported, not raised."""
    nodes = list(cluster.nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(node_status, nodes))
