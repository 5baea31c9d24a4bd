"""The local runtime: five "nodes" that are directories on this machine, servers on 127.0.0.1.

No root, any POSIX OS. Node i's services listen on the usual ports plus ``port_offset``
(``base_offset + (i - 1) * offset_step``). Kills and pauses are signals; clock skew works where
the wall-clock library can be built (gcc); partitions and netem go through a fault-injecting proxy
on every peer link (bench.cluster.link_faults), since all nodes share one loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.cluster.inventory import DEFAULT_NODE_PYTHON, Inventory, NodeSpec, save_inventory
from bench.cluster.link_faults import PROXY_DIR
from bench.cluster.processes import process_alive
from lockbench.daemon import detach_fuse_mounts_command
from lockbench.errors import ClusterError

INVENTORY_FILE = "inventory.yaml"
LOCAL_ADDRESS = "127.0.0.1"
DEFAULT_OFFSET_STEP = 10
KILL_WAIT_S = 5.0


def local_up(
    cluster_dir: Path,
    *,
    nodes: int = 5,
    base_offset: int = 0,
    offset_step: int = DEFAULT_OFFSET_STEP,
    python: str = DEFAULT_NODE_PYTHON,
) -> Inventory:
    """Make the node directories and write the inventory (nothing runs yet)."""
    cluster_dir = cluster_dir.resolve()
    if (cluster_dir / INVENTORY_FILE).exists():
        raise ClusterError(
            f"{cluster_dir} already holds a cluster: run `lockbench cluster down` first"
        )
    if not 1 <= nodes <= 50:
        raise ClusterError(f"a local cluster has 1-50 nodes, not {nodes}")
    if offset_step < 2:
        raise ClusterError("offset_step must leave room for the client and peer ports (>= 2)")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir.chmod(0o700)
    specs = []
    for index in range(1, nodes + 1):
        data_dir = cluster_dir / "nodes" / f"n{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        specs.append(
            NodeSpec(
                name=f"n{index}",
                address=LOCAL_ADDRESS,
                data_dir=str(data_dir),
                port_offset=base_offset + (index - 1) * offset_step,
                python=python,
            )
        )
    inventory = Inventory(
        runtime="local", nodes=tuple(specs), cluster_dir=cluster_dir, known_hosts=None
    )
    save_inventory(inventory, cluster_dir / INVENTORY_FILE)
    return inventory


def _wait_until_gone(pids: list[int], timeout: float) -> list[int]:
    """SIGKILL is delivered asynchronously: wait (bounded) until the processes are dead, so a
    caller that checks right after ``down`` finds nothing running. Returns the survivors."""
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [pid for pid in pids if process_alive(pid)]


def local_down(cluster_dir: Path) -> list[str]:
    """kill -9 every daemon with a pidfile in a node directory and the link proxy, then remove
    what local_up (and the proxy) made."""
    cluster_dir = cluster_dir.resolve()
    removed: list[str] = []
    nodes_dir = cluster_dir / "nodes"
    proxy_dir = cluster_dir / PROXY_DIR
    killed: list[int] = []
    for pidfile in [*sorted(nodes_dir.glob("*/*.pid")), *sorted(proxy_dir.glob("*.pid"))]:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid > 1 and process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
                killed.append(pid)
                removed.append(f"process {pid} ({pidfile.parent.name}/{pidfile.stem})")
    survivors = _wait_until_gone(killed, KILL_WAIT_S)
    if nodes_dir.exists():
        # a killed power-loss filesystem (root only) leaves a dead mount rmtree cannot enter
        detached = subprocess.run(
            ["sh", "-c", detach_fuse_mounts_command(str(nodes_dir))],
            capture_output=True,
            text=True,
            check=False,
        )
        removed += [f"mount {m}" for m in detached.stdout.split()]
    for directory in (nodes_dir, proxy_dir):
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"directory {directory}")
    inventory = cluster_dir / INVENTORY_FILE
    if inventory.exists():
        inventory.unlink()
        removed.append(f"file {inventory}")
    with contextlib.suppress(OSError):
        cluster_dir.rmdir()
    if survivors:
        raise ClusterError(
            f"{cluster_dir}: processes {survivors} survived SIGKILL for {KILL_WAIT_S} s "
            "(stuck in the kernel?); check them with ps"
        )
    return removed
