"""What every backend that runs one server daemon per node does the same way.

The process faults (kill -9, SIGSTOP, SIGCONT), stop and log files go through
``lockbench.daemon`` by the daemon's name; a backend whose server runs on only some nodes
(one Redis server) says which, and the others take the same calls as no-ops: a fault aimed at an
idle node reaches no lock service, as on a real deployment.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from lockbench.daemon import kill_daemon, log_path, signal_daemon, start_daemon, stop_daemon
from lockbench.protocols import Node


def port_offset(node: Node) -> int:
    """The node's port offset (local runtime nodes share one address); 0 elsewhere."""
    spec = getattr(node, "spec", None)
    offset = getattr(spec, "port_offset", 0)
    return offset if isinstance(offset, int) else 0


def clear_data_dir(node: Node, path: str, *, recreate: bool = False) -> None:
    """Delete a server's data directory on the node (``recreate``: leave it there, empty), so
    the next start begins a new cluster with no data an earlier run left."""
    quoted = shlex.quote(path)
    node.run(f"rm -rf {quoted} && mkdir -p {quoted}" if recreate else f"rm -rf {quoted}")


class NodeDaemon:
    """Backend methods for a server that runs as daemon ``daemon`` on the nodes it runs on.

    A subclass that starts its server with one command line gives ``server_argv`` (and
    ``ready_port``, ``faketime``) and takes ``start`` as it is; one whose start needs more
    (an environment, a start order) overrides ``start``."""

    daemon: str = ""
    # Start under the bench's wall-clock preload (the clock nemesis); False for a server whose
    # clock it cannot reach.
    faketime: bool = True

    def runs_on(self, node: Node) -> bool:
        """Whether the server runs on this node (all nodes unless a subclass says otherwise)."""
        return True

    def server_argv(self, node: Node) -> list[str]:
        """The server's command line on the node."""
        raise NotImplementedError(f"{type(self).__name__} starts its server itself")

    def ready_port(self, node: Node) -> int | None:
        """The port that accepts connections once the server is up (None: do not wait)."""
        return None

    def start(self, node: Node) -> None:
        """Start the server as daemon ``daemon`` (if it runs on the node); wait for its port."""
        if self.runs_on(node):
            start_daemon(
                node,
                self.daemon,
                self.server_argv(node),
                faketime=self.faketime,
                ready_port=self.ready_port(node),
            )

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
