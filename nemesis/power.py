"""Power loss: kill -9 the server and drop every write it had not fsynced, then restart it.

A plain kill keeps the page cache, so a server that never fsyncs survives it. For this fault each
node's server data (the directory the backend declares, ``Backend.state_dir``) lives on the
bench's own FUSE filesystem (nemesis/lazyfs.py, durability model in docs/nemeses.md), mounted by
``PowerLossMounts.mount_all`` before the servers start and unmounted (data kept) after they stop.
``start-power-loss`` kills the targets' servers, tells each node's filesystem to lose power
(SIGUSR1: it unmounts and rolls its directory back to what was fsynced, then reports what it
dropped), mounts it again and leaves the server down; ``stop-power-loss`` restarts the servers.

The filesystem runs as daemon ``lazyfs`` on the node (lockbench.daemon: pidfile, log), from
``{data_dir}/lockbench-lazyfs.py``, under the node's system Python: it is stdlib-only.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockbench.daemon import log_path, pidfile_path, start_daemon
from lockbench.deploy import write_node_file
from lockbench.errors import ConfigError
from lockbench.protocols import Backend, Cluster, Node, state_dir_of
from nemesis.lazyfs import BACKING_SUFFIX, FSTYPE, REPORT_SUFFIX, TRASH_SUFFIX
from nemesis.process import ProcessNemesis
from nemesis.remote import NemesisActionError, NodeLocks, error_messages, on_nodes, raise_first

LAZYFS_SOURCE = Path(__file__).with_name("lazyfs.py").read_text(encoding="utf-8")
DAEMON = "lazyfs"
# The key of the nodes' PowerLossMounts in lockbench.protocols.NemesisSetting.shared.
POWER_LOSS_MOUNTS = "power-loss-mounts"
# Mounting is one syscall; a node slow enough to miss this is too loaded to test on.
MOUNT_WAIT_S = 15.0
# Unmount and roll back: bounded by how much was written since the last fsync.
UNMOUNT_WAIT_S = 30.0


def script_path(node: Node) -> str:
    return f"{node.data_dir}/lockbench-lazyfs.py"


def node_python(node: Node) -> str:
    """The node's system Python (the filesystem needs nothing else)."""
    spec = getattr(node, "spec", None)
    python = getattr(spec, "python", None)
    return python if isinstance(python, str) else "python3"


def _mounted_test(directory: str) -> str:
    """Shell: true when ``directory`` is a lazyfs mount point in this mount namespace."""
    return f"grep -q {shlex.quote(f' {directory} {FSTYPE} ')} /proc/self/mounts"


def detach_command(directory: str) -> str:
    """Shell that detaches a lazyfs mount left by a dead filesystem process and puts the backing
    directory back in place (what the process itself does when it stops)."""
    quoted = shlex.quote(directory)
    backing = shlex.quote(directory + BACKING_SUFFIX)
    trash = shlex.quote(directory + TRASH_SUFFIX)
    return (
        f"if {_mounted_test(directory)}; then umount -l {quoted}; fi; "
        f"if [ -d {backing} ]; then rmdir {quoted} 2>/dev/null; "
        f"[ -e {quoted} ] || mv {backing} {quoted}; fi; rm -rf {trash}; true"
    )


def mount(node: Node, directory: str, *, install: bool = True) -> int:
    """Mount the filesystem over ``directory`` on the node; returns the daemon's pid.

    ``install=False``: the program is on the node already (a remount after a power loss), which
    saves the round trips of checking it."""
    if install:
        write_node_file(node, script_path(node), LAZYFS_SOURCE)
    node.run(detach_command(directory), check=False)
    pid = start_daemon(
        node, DAEMON, [node_python(node), script_path(node), directory], faketime=False
    )
    tries = int(MOUNT_WAIT_S / 0.1)
    waited = node.run(
        f"for i in $(seq {tries}); do if {_mounted_test(directory)}; then echo MOUNTED; exit 0; "
        f"fi; kill -0 {pid} 2>/dev/null || break; sleep 0.1; done; echo MISSING",
        timeout=MOUNT_WAIT_S + 10,
        check=False,
    )
    if "MOUNTED" not in waited.stdout:
        tail = node.run(f"tail -n 5 {shlex.quote(log_path(node, DAEMON))}", check=False).stdout
        raise NemesisActionError(
            f"{node.name}: the power-loss filesystem did not mount on {directory}: {tail.strip()}"
        )
    return pid


def unmount(node: Node, directory: str, *, power_loss: bool) -> dict[str, Any]:
    """Stop the filesystem: with ``power_loss`` un-fsynced writes are dropped, else kept.

    Returns the filesystem's report (what it dropped). A filesystem process that is gone already
    leaves a dead mount: it is detached and the report says ``{"mode": "detached"}``.
    """
    pidfile = shlex.quote(pidfile_path(node, DAEMON))
    report = shlex.quote(directory + REPORT_SUFFIX)
    signal_name = "USR1" if power_loss else "TERM"
    tries = int(UNMOUNT_WAIT_S / 0.05)
    script = "\n".join(
        [
            f"rm -f {report}",
            f'pid=$(cat {pidfile} 2>/dev/null); alive() {{ [ -n "$pid" ] && '
            'grep -q lockbench-lazyfs /proc/"$pid"/cmdline 2>/dev/null; }',
            "if alive; then",
            f'  kill -{signal_name} "$pid"',
            f"  for i in $(seq {tries}); do alive || break; sleep 0.05; done",
            '  if alive; then kill -KILL "$pid"; echo STUCK; fi',
            "fi",
            f"rm -f {pidfile}",
            f"if [ -s {report} ]; then cat {report}; else {detach_command(directory)}; "
            "echo DETACHED; fi",
        ]
    )
    out = node.run(script, timeout=UNMOUNT_WAIT_S + 15).stdout
    if "STUCK" in out:
        raise NemesisActionError(
            f"{node.name}: the power-loss filesystem on {directory} did not stop within "
            f"{UNMOUNT_WAIT_S:g} s; killed and detached it (un-fsynced writes may survive)"
        )
    if "DETACHED" in out:
        return {"mode": "detached"}
    try:
        found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise NemesisActionError(
            f"{node.name}: unreadable report from the power-loss filesystem: {out[-200:]!r}"
        ) from None
    return found


def require_state_dir(backend: Backend) -> Callable[[Node], str]:
    state_dir = state_dir_of(backend)
    if state_dir is None:
        raise ConfigError(
            f"backend {backend.name!r} does not declare the directory its server keeps its data "
            "in (state_dir), so the power-loss fault cannot reach it"
        )
    return state_dir


class PowerLossMounts:
    """The power-loss filesystem of every node: mounted before the servers start, unmounted
    (data kept) after they stop. Remembers where it mounted, for the heal and the teardown."""

    def __init__(self, cluster: Cluster, backend: Backend) -> None:
        self.cluster = cluster
        self.state_dir = require_state_dir(backend)
        self.mounted: set[str] = set()

    def directory(self, name: str) -> str:
        return self.state_dir(self.cluster.node(name))

    def mount(self, name: str, *, install: bool = True) -> None:
        node = self.cluster.node(name)
        mount(node, self.directory(name), install=install)
        self.mounted.add(name)

    def unmount(self, name: str, *, power_loss: bool) -> dict[str, Any]:
        node = self.cluster.node(name)
        self.mounted.discard(name)
        return unmount(node, self.directory(name), power_loss=power_loss)

    def mount_all(self) -> None:
        """Before the servers start: a node that cannot mount fails the setup, naming it."""
        names = [node.name for node in self.cluster.nodes]
        raise_first(on_nodes(list(self.cluster.nodes), lambda n: self.mount(n.name)))
        self.mounted.update(names)

    def unmount_all(self) -> list[str]:
        """After the servers stopped: unmount keeping every write; one message per failure."""
        nodes = [self.cluster.node(name) for name in sorted(self.mounted)]
        results = on_nodes(nodes, lambda n: self.unmount(n.name, power_loss=False))
        return error_messages(results)


class PowerLossNemesis(ProcessNemesis):
    """Implements lockbench.protocols.Nemesis for ``start-power-loss`` / ``stop-power-loss``: a
    kill (ProcessNemesis) whose hit also drops the node's un-fsynced writes."""

    def __init__(
        self, cluster: Cluster, backend: Backend, mounts: PowerLossMounts, locks: NodeLocks
    ) -> None:
        super().__init__("power-loss", cluster, backend, locks)
        self.mounts = mounts

    def _hit(self, name: str) -> dict[str, Any]:
        node = self.cluster.node(name)
        with self.locks.lock(name):
            self.backend.kill(node)
            dropped = self.mounts.unmount(name, power_loss=True)
            if dropped.get("mode") != "power-loss":
                raise NemesisActionError(
                    f"{name}: the filesystem was not running; nothing was dropped ({dropped})"
                )
            self.mounts.mount(name, install=False)
            return dropped

    def _details(self, hits: dict[str, Any]) -> dict[str, Any]:
        return {"dropped": hits}

    def _undo(self, name: str) -> None:
        node = self.cluster.node(name)
        with self.locks.lock(name):
            if name not in self.mounts.mounted:
                self.mounts.mount(name)  # a start that failed half-way
            self.backend.start(node)
