"""etcd (Debian's etcd-server, a Go program) as the server half of a backend, for clock tests.

It deploys, starts, kills and pauses a real etcd member per node; it serves no lock clients (the
etcd lock backend proper is bench/backends' business). Its use here: a test asking for a clock
fault against it must be refused before anything starts, because Go reads the clock through the
vDSO and the wall-clock library cannot move it.
"""

from __future__ import annotations

from collections.abc import Sequence

from lockbench.daemon import kill_daemon, log_path, signal_daemon, start_daemon, stop_daemon
from lockbench.protocols import Cluster, LockClient, Node

DAEMON = "etcd"
CLIENT_PORT, PEER_PORT = 2379, 2380


class EtcdServers:
    """Implements the deploy-and-fault half of bench.protocols.Backend for etcd members."""

    name = "etcd"

    def __init__(self) -> None:
        self.members = ""
        self.started: list[str] = []

    def server_programs(self, node: Node) -> Sequence[str]:
        return ["etcd"]

    def deploy(self, cluster: Cluster) -> None:
        self.members = ",".join(f"{n.name}=http://{n.address}:{PEER_PORT}" for n in cluster.nodes)

    def start(self, node: Node) -> None:
        self.started.append(node.name)
        peer, client = f"http://{node.address}:{PEER_PORT}", f"http://{node.address}:{CLIENT_PORT}"
        argv = [
            "etcd",
            f"--name={node.name}",
            f"--data-dir={node.data_dir}/etcd",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--initial-cluster={self.members}",
        ]
        start_daemon(node, DAEMON, argv, ready_port=CLIENT_PORT)

    def stop(self, node: Node) -> None:
        stop_daemon(node, DAEMON)

    def kill(self, node: Node) -> None:
        kill_daemon(node, DAEMON)

    def pause(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "STOP")

    def resume(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "CONT")

    def wipe(self, node: Node) -> None:
        node.run(f"rm -rf {node.data_dir}/etcd")

    def leader(self, cluster: Cluster) -> str | None:
        return None

    def log_files(self, node: Node) -> Sequence[str]:
        return [log_path(node, DAEMON)]

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        raise NotImplementedError("EtcdServers runs etcd members only; it serves no lock clients")
