"""What every backend that runs one server daemon per node does the same way.

The process faults (kill -9, SIGSTOP, SIGCONT), stop and log files go through
``lockbench.daemon`` by the daemon's name; a backend whose server runs on only some nodes
(one Redis server) says which, and the others take the same calls as no-ops: a fault aimed at an
idle node reaches no lock service, as on a real deployment.
"""

from __future__ import annotations

from collections.abc import Sequence

from lockbench.daemon import kill_daemon, log_path, signal_daemon, stop_daemon
from lockbench.protocols import Node


def port_offset(node: Node) -> int:
    """The node's port offset (local runtime nodes share one address); 0 elsewhere."""
    spec = getattr(node, "spec", None)
    offset = getattr(spec, "port_offset", 0)
    return offset if isinstance(offset, int) else 0


class NodeDaemon:
    """Backend methods for a server that runs as daemon ``daemon`` on the nodes it runs on."""

    daemon: str = ""

    def runs_on(self, node: Node) -> bool:
        """Whether the server runs on this node (all nodes unless a subclass says otherwise)."""
        return True

    def stop(self, node: Node) -> None:
        if self.runs_on(node):
            stop_daemon(node, self.daemon)

    def kill(self, node: Node) -> None:
        if self.runs_on(node):
            kill_daemon(node, self.daemon)

    def pause(self, node: Node) -> None:
        if self.runs_on(node):
            signal_daemon(node, self.daemon, "STOP")

    def resume(self, node: Node) -> None:
        if self.runs_on(node):
            signal_daemon(node, self.daemon, "CONT")

    def log_files(self, node: Node) -> Sequence[str]:
        return [log_path(node, self.daemon)] if self.runs_on(node) else []
