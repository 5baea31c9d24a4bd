"""etcd (Debian's etcd-server, 3.4) as a bench backend: five members, one daemon per node.

Each node runs ``/usr/bin/etcd`` as daemon ``etcd`` through ``lockbench.daemon``, with its data
in ``{data_dir}/etcd`` and every setting on the command line (no config file to drift). Ports are
2379 (clients, gRPC and the JSON gateway) and 2380 (peers), each plus the node's ``port_offset``.

Locks use etcd's own lock recipe through its v3lock service (``bench.backends.etcd_client``):
a lease, kept alive by the client, and ``Lock(name, lease)``, which creates a key under the lock
name and waits until every older key under it is gone. The fencing token is that key's create
revision: etcd's revision is one counter for the whole store, so a later holder's key is always
created at a higher revision.

Faults: kill, pause, power-loss (its data directory is ``state_dir``), partition and netem reach
etcd. Clock faults do not on netns: etcd is a Go program, which reads the clock through the vDSO,
not through libc, so libfaketime's preload cannot move its clock (MACHINE-NOTES); a clock fault
is refused rather than run without effect (on VMs the nemesis steps the system clock, which
reaches it). On the local runtime partitions and netem are refused too: every member must see
the same peer URLs, so the link proxy (one port per directed link) cannot sit between etcd
members.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.backends.etcd_client import open_etcd_client
from bench.backends.node_daemon import NodeDaemon, clear_data_dir, port_offset
from bench.backends.server_binaries import ServerBinary, require_server_binaries
from lockbench.clock_preload import steps_system_clock
from lockbench.daemon import kill_daemon, stop_daemon
from lockbench.errors import ClusterError, ConfigError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, LockClient, Node

CLIENT_PORT = 2379
PEER_PORT = 2380
DAEMON = "etcd"
ETCD = ServerBinary("/usr/bin/etcd", "etcd-server")
STATUS_TIMEOUT_S = 1.0
CLUSTER_TOKEN = "lockbench"
OPTION_KEYS: frozenset[str] = frozenset({"heartbeat_ms", "election_ms"})
CLOCK_REFUSAL = (
    "etcd is a Go program: it reads the clock through the vDSO, which no preloaded library "
    "(the bench's wall-clock library, libfaketime) reaches, so a clock fault would run "
    "without moving etcd's clock"
)
LINK_PROXY_REFUSAL = (
    "on the local runtime peer links go through a proxy with one port per link, but every "
    "etcd member must be given the same peer URLs; use the netns runtime"
)


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    """``backend_options`` for etcd: its Raft timing (etcd's defaults: 100 ms and 1000 ms).

    etcd grants no lease shorter than 1.5 election timeouts (rounded up to whole seconds), so
    a test with ``ttl: 2`` needs an election timeout of at most 1333 ms.
    """

    heartbeat_ms: int = 100
    election_ms: int = 1000

    @staticmethod
    def from_mapping(options: Mapping[str, Any]) -> EtcdOptions:
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise ConfigError(
                f"backend_options: unknown key(s) {', '.join(unknown)} for the etcd backend "
                f"(known: {', '.join(sorted(OPTION_KEYS))})"
            )
        values = {}
        defaults = EtcdOptions()
        for key in sorted(OPTION_KEYS):
            value = options.get(key, getattr(defaults, key))
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"backend_options: {key} must be a positive integer: {value!r}")
            values[key] = value
        if values["election_ms"] < 5 * values["heartbeat_ms"]:
            raise ConfigError(
                "backend_options: election_ms must be at least 5 x heartbeat_ms "
                f"(etcd's own rule): {values['election_ms']} < 5 x {values['heartbeat_ms']}"
            )
        return EtcdOptions(**values)


def client_port(node: Node) -> int:
    return CLIENT_PORT + port_offset(node)


def peer_port(node: Node) -> int:
    return PEER_PORT + port_offset(node)


def client_url(node: Node) -> str:
    return f"http://{node.address}:{client_port(node)}"


def peer_url(node: Node) -> str:
    return f"http://{node.address}:{peer_port(node)}"


def etcd_data_dir(node: Node) -> str:
    return f"{node.data_dir}/etcd"


def etcd_argv(cluster: Cluster, node: Node, options: EtcdOptions) -> list[str]:
    """The member's whole configuration, as etcd's command-line flags."""
    initial = ",".join(f"{member.name}={peer_url(member)}" for member in cluster.nodes)
    return [
        ETCD.program,
        "--name",
        node.name,
        "--data-dir",
        etcd_data_dir(node),
        "--listen-client-urls",
        client_url(node),
        "--advertise-client-urls",
        client_url(node),
        "--listen-peer-urls",
        peer_url(node),
        "--initial-advertise-peer-urls",
        peer_url(node),
        "--initial-cluster",
        initial,
        "--initial-cluster-token",
        CLUSTER_TOKEN,
        "--initial-cluster-state",
        "new",
        "--heartbeat-interval",
        str(options.heartbeat_ms),
        "--election-timeout",
        str(options.election_ms),
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    ]


def gateway_call(
    node: Node, path: str, body: Mapping[str, Any], *, timeout: float = STATUS_TIMEOUT_S
) -> dict[str, Any] | None:
    """POST to the node's JSON gateway (``/v3/...``); None if it does not answer."""
    request = urllib.request.Request(
        f"{client_url(node)}{path}",
        data=json.dumps(dict(body)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def member_status(node: Node) -> dict[str, Any] | None:
    """etcd's status endpoint on the node: its member id, the leader it follows, the term."""
    return gateway_call(node, "/v3/maintenance/status", {})


def leader_from_statuses(
    names: Sequence[str], statuses: Sequence[Mapping[str, Any] | None]
) -> tuple[str | None, int | None]:
    """The member that reports itself leader in the highest term any leader reports.

    A member is the leader when its status's ``leader`` equals its own ``header.member_id``
    (etcd's uint64 ids arrive as decimal strings through the gateway).
    """
    best: tuple[int, str] | None = None
    for name, status in zip(names, statuses, strict=True):
        if status is None:
            continue
        header = status.get("header")
        own = header.get("member_id") if isinstance(header, Mapping) else None
        if own is None or str(status.get("leader")) != str(own):
            continue
        try:
            term = int(status.get("raftTerm", -1))
        except (TypeError, ValueError):
            term = -1
        if best is None or term > best[0]:
            best = (term, name)
    if best is None:
        return None, None
    return best[1], (best[0] if best[0] >= 0 else None)


class EtcdBackend(NodeDaemon):
    """Implements lockbench.protocols.Backend for a five-member etcd cluster."""

    name = "etcd"
    daemon = DAEMON
    faketime = False  # it would not reach etcd's clock (see the module docstring)
    runtimes = ("netns", "ssh", "vagrant", "local")

    def __init__(self, options: EtcdOptions | None = None) -> None:
        self.options = options or EtcdOptions()
        self._cluster: Cluster | None = None
        self.last_term: int | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EtcdBackend:
        return cls(EtcdOptions.from_mapping(options))

    def server_programs(self, node: Node) -> list[str]:
        """The program that serves, for the clock-reach check (a Go program: refused)."""
        return [ETCD.program]

    def fault_refusal(self, fault: str, runtime: str) -> str | None:
        """Clock faults reach etcd only where the node's own clock is stepped (VMs); link
        faults do not on the local runtime."""
        if fault == "clock" and not steps_system_clock(runtime):
            return CLOCK_REFUSAL
        if runtime == "local" and fault in ("partition", "netem"):
            return LINK_PROXY_REFUSAL
        return None

    def deploy(self, cluster: Cluster) -> None:
        """Nothing to install (the nodes' etcd-server package must be there: checked first).

        Every run starts a new etcd cluster: data an earlier run left on the nodes (its keys,
        leases and member ids) is deleted, after stopping an etcd a previous run left running.
        """
        require_server_binaries(cluster, self.name, [ETCD])
        self._cluster = cluster
        on_each_node("clearing old etcd data", list(cluster.nodes), self._clear)

    def _clear(self, node: Node) -> None:
        stop_daemon(node, DAEMON)
        self._empty_data_dir(node)

    @staticmethod
    def _empty_data_dir(node: Node) -> None:
        """An empty data directory, there before etcd starts (the power-loss fault mounts its
        filesystem over it), with the owner-only mode etcd asks for."""
        clear_data_dir(node, etcd_data_dir(node), recreate=True)
        node.run(f"chmod 700 {shlex.quote(etcd_data_dir(node))}")

    def state_dir(self, node: Node) -> str:
        """Where etcd keeps its WAL and snapshots (the power-loss fault's filesystem)."""
        return etcd_data_dir(node)

    def server_argv(self, node: Node) -> list[str]:
        if self._cluster is None:
            raise ClusterError("etcd backend: start before deploy (the member list is unknown)")
        return etcd_argv(self._cluster, node, self.options)

    def ready_port(self, node: Node) -> int | None:
        return client_port(node)

    def wipe(self, node: Node) -> None:
        """Kill etcd if it runs and delete its data (it can then join only a new cluster)."""
        kill_daemon(node, DAEMON)
        self._empty_data_dir(node)

    def leader_status(self, cluster: Cluster) -> tuple[str | None, int | None]:
        """(leader, term) from every member's status endpoint; also kept in ``last_term``."""
        nodes = list(cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            statuses = list(pool.map(member_status, nodes))
        leader, term = leader_from_statuses([node.name for node in nodes], statuses)
        self.last_term = term
        return leader, term

    def leader(self, cluster: Cluster) -> str | None:
        return self.leader_status(cluster)[0]

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        endpoints = [f"{n.address}:{client_port(n)}" for n in cluster.nodes]
        preferred = f"{node.address}:{client_port(node)}"
        node_endpoints = {n.name: f"{n.address}:{client_port(n)}" for n in cluster.nodes}
        return await open_etcd_client(
            endpoints, preferred, ttl=ttl, process=process, node_endpoints=node_endpoints
        )
