"""Third-party lock servers come from the nodes' own packages: check they are there first.

etcd, Redis and ZooKeeper are not deployed by lockbench: each node must have its distribution's
package installed (scripts/setup.sh installs them on netns and local nodes; the Vagrant boxes are
provisioned with them). A missing binary must fail the run before any server starts, naming
the node and the Debian package that provides it, not as a daemon that "exited right after start".
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from lockbench.errors import ClusterError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A server program a backend runs on every node, and the Debian package that has it."""

    program: str  # absolute path, as the daemon is started with it
    package: str


class MissingServerBinary(ClusterError):
    """A node lacks a backend's server program; names the nodes and the package to install."""


def missing_on(node: Node, binaries: Sequence[ServerBinary]) -> list[ServerBinary]:
    """The binaries the node lacks (one round trip)."""
    probe = "".join(
        f"test -x {shlex.quote(b.program)} || echo MISSING {shlex.quote(b.program)}; "
        for b in binaries
    )
    out = node.run(probe or "true", check=False).stdout
    absent = {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("MISSING ")}
    return [b for b in binaries if b.program in absent]


def require_server_binaries(
    cluster: Cluster, backend: str, binaries: Sequence[ServerBinary]
) -> None:
    """Raise MissingServerBinary naming every node that lacks one, and the package to install."""
    missing = on_each_node(
        f"checking {backend}'s server binaries",
        list(cluster.nodes),
        lambda node: missing_on(node, binaries),
    )
    lacking = {name: found for name, found in missing.items() if found}
    if not lacking:
        return
    packages = sorted({b.package for found in lacking.values() for b in found})
    where = "; ".join(
        f"{name}: {', '.join(b.program for b in found)}" for name, found in sorted(lacking.items())
    )
    raise MissingServerBinary(
        f"backend {backend}: server binary missing ({where}); install the Debian package "
        f"{' and '.join(packages)} on every node (apt-get install {' '.join(packages)})"
    )
