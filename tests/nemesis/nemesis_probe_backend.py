"""A Backend for the probe server: real processes to kill, pause and read the clock of.

It lets the nemesis tests observe process and clock faults on any runtime before (and besides)
the reference lock server; it has no leader, as the probe servers do not form a cluster.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lockbench.daemon import daemon_pid, log_path, signal_daemon, start_daemon, stop_daemon
from lockbench.protocols import Cluster, LockClient, Node

PROBE_SERVER = Path(__file__).with_name("nemesis_probe_server.py")
DAEMON = "probe"
BASE_PORT = 7790


def probe_port(node: Node) -> int:
    offset = getattr(getattr(node, "spec", None), "port_offset", 0)
    return BASE_PORT + int(offset)


def read_probe_time(node: Node, timeout: float = 2.0) -> tuple[float, float]:
    """Connect from the control node: (the probe's clock minus ours in ms, the round trip in ms)."""
    before = time.time()
    with socket.create_connection((node.address, probe_port(node)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = sock.makefile().readline()
    after = time.time()
    return (float(data.split()[0]) - (before + after) / 2) * 1000.0, (after - before) * 1000.0


def read_probe_clock(node: Node, timeout: float = 2.0) -> float:
    """The wall clock the probe server itself sees, in seconds since the epoch."""
    with socket.create_connection((node.address, probe_port(node)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        return float(sock.makefile().readline().split()[0])


def read_probe_ticks(node: Node, timeout: float = 2.0) -> int:
    """How often the probe's timer thread has returned from ``time.sleep(0.05)`` so far."""
    with socket.create_connection((node.address, probe_port(node)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        return int(sock.makefile().readline().split()[1])


class ProbeBackend:
    """The fault half of lockbench.protocols.Backend for the probe server (it serves no locks)."""

    name = "probe"

    def deploy(self, cluster: Cluster) -> None:
        """Nothing to install: nodes share this machine's filesystem (netns, local)."""

    def start(self, node: Node) -> None:
        argv = [sys.executable, str(PROBE_SERVER), node.address, str(probe_port(node))]
        start_daemon(node, DAEMON, argv, ready_port=probe_port(node))

    def stop(self, node: Node) -> None:
        stop_daemon(node, DAEMON)

    def kill(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "KILL")

    def pause(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "STOP")

    def resume(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "CONT")

    def wipe(self, node: Node) -> None:
        node.run(f"rm -f {log_path(node, DAEMON)}", check=False)

    def leader(self, cluster: Cluster) -> str | None:
        return None

    def log_files(self, node: Node) -> Sequence[str]:
        return [log_path(node, DAEMON)]

    def server_programs(self, node: Node) -> Sequence[str]:
        return [sys.executable]

    def server_clock(self, node: Node) -> float | None:
        """The probe's own wall clock (for the nemesis's reach check); None if it is silent."""
        try:
            return read_probe_clock(node, timeout=1.0)
        except OSError:
            return None

    def running(self, node: Node) -> bool:
        return daemon_pid(node, DAEMON) is not None

    def ensure_started(self, node: Node) -> None:
        if not self.running(node):
            self.start(node)

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        raise NotImplementedError("the probe server serves no locks: it is a target for faults")
