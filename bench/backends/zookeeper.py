"""Apache ZooKeeper as a bench backend: a five-server ensemble from Debian's ``zookeeper`` package.

Each node runs one ZooKeeper server (a JVM, ``QuorumPeerMain``) as daemon ``zookeeper`` through
``lockbench.daemon`` (pidfile, log, the wall-clock library on nodes armed for clock faults), with
its configuration under ``{data_dir}/zookeeper`` and ``myid``, snapshots and transaction log in
its dataDir, ``{data_dir}/zookeeper/data`` (the ``state_dir`` the power-loss fault reaches).
Ports: 2181 (clients), 2888 (quorum), 3888 (leader election), each plus the node's
``port_offset``. Nodes must have Debian's jar and a Java runtime: ``deploy`` checks every node
first and names the package to install if one lacks them, before any server starts. Locks are
kazoo's Lock recipe (``bench.backends.zookeeper_client``).

The JVM reads its wall clock through libc, so the bench's clock library reaches it (its log
timestamps move); ZooKeeper times sessions and elections on the monotonic clock, which the
library leaves alone, so a clock fault is expected not to change its lock safety
(docs/backends.md).
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.backends.node_daemon import NodeDaemon, port_offset
from bench.backends.zookeeper_client import LEASE_SOURCES, open_zookeeper_client
from lockbench.daemon import kill_daemon, start_daemon
from lockbench.errors import ClusterError, ConfigError
from lockbench.protocols import Cluster, LockClient, Node

CLIENT_PORT = 2181
QUORUM_PORT = 2888
ELECTION_PORT = 3888
DAEMON = "zookeeper"
DEBIAN_PACKAGE = "zookeeper"
# Debian's server jar; its manifest's Class-Path names the rest (netty, jute, slf4j-api, ...).
SERVER_JAR = "/usr/share/java/zookeeper.jar"
# slf4j's log4j 1.2 binding and log4j itself (both pulled in by the zookeeper package), so the
# server's log says what it does instead of slf4j's "no-operation logger".
LOGGING_JARS: tuple[str, ...] = (
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
)
JAVA = "java"
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# Five JVMs share a two-core machine with the bench: a small heap and the serial collector keep
# each server's footprint and GC pauses small (the pause nemesis, not the JVM, should stop them),
# the C1 compiler alone halves the CPU a server burns while it starts, and sizing the JVM for
# one processor keeps its thread pools (GC, compiler, NIO workers) small.
JVM_FLAGS: tuple[str, ...] = (
    "-Xms32m",
    "-Xmx192m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:ActiveProcessorCount=1",
    "-Djava.net.preferIPv4Stack=true",
)
STATUS_TIMEOUT_S = 1.0
OPTION_KEYS: frozenset[str] = frozenset(
    {"tick_ms", "init_limit", "sync_limit", "connect_to", "server_jar", "force_sync", "lease_from"}
)
CONNECT_MODES: tuple[str, ...] = ("all", "own")


@dataclass(frozen=True, slots=True)
class ZooKeeperOptions:
    """The test's ``backend_options`` for ZooKeeper.

    ``tick_ms``: ZooKeeper's tickTime; sessions may last 2..20 ticks (the bench's TTL is asked
    for and clamped by the server into that range). ``init_limit``/``sync_limit``: ticks a
    follower may take to connect to / stay in sync with the leader. ``connect_to``: ``all``
    gives each client every server (kazoo moves to another when its server fails, as deployed);
    ``own`` only the server on the process's node, so partitioning that server from the quorum
    cuts the client off until its session expires (the session-expiry anomaly, docs/comparison.md).
    ``lease_from``: what the client's lease deadline runs from: ``sync`` (an answered heartbeat
    sync, which the leader confirmed) or ``ping`` (any answer of its own server: what kazoo's
    connection state tells an application; the session-expiry anomaly's configuration).
    ``server_jar``: the server jar on the nodes (Debian's by default). ``force_sync``:
    ZooKeeper's ``forceSync`` (fdatasync of the transaction log before a write is acknowledged;
    ``false`` only to show what a power loss then costs).
    """

    tick_ms: int = 1000
    init_limit: int = 60
    sync_limit: int = 20
    connect_to: str = "all"
    server_jar: str = SERVER_JAR
    force_sync: bool = True
    lease_from: str = "sync"

    @staticmethod
    def from_mapping(options: Mapping[str, Any]) -> ZooKeeperOptions:
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise ConfigError(
                f"backend_options: unknown key(s) {', '.join(unknown)} for the zookeeper "
                f"backend (known: {', '.join(sorted(OPTION_KEYS))})"
            )
        values: dict[str, Any] = {}
        for key in ("tick_ms", "init_limit", "sync_limit"):
            if key in options:
                value = options[key]
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ConfigError(
                        f"backend_options: key {key!r} must be a positive integer: {value!r}"
                    )
                values[key] = value
        for key, choices in (("connect_to", CONNECT_MODES), ("lease_from", LEASE_SOURCES)):
            if key in options:
                choice = options[key]
                if choice not in choices:
                    raise ConfigError(
                        f"backend_options: key {key!r} must be one of "
                        f"{', '.join(choices)}: {choice!r}"
                    )
                values[key] = choice
        if "server_jar" in options:
            jar = options["server_jar"]
            if not isinstance(jar, str) or not jar.startswith("/"):
                raise ConfigError(
                    f"backend_options: key 'server_jar' must be an absolute path: {jar!r}"
                )
            values["server_jar"] = jar
        if "force_sync" in options:
            force_sync = options["force_sync"]
            if not isinstance(force_sync, bool):
                raise ConfigError(
                    f"backend_options: key 'force_sync' must be true or false: {force_sync!r}"
                )
            values["force_sync"] = force_sync
        return ZooKeeperOptions(**values)


def client_port(node: Node) -> int:
    return CLIENT_PORT + port_offset(node)


def zk_dir(node: Node) -> str:
    return f"{node.data_dir}/zookeeper"


def zk_data_dir(node: Node) -> str:
    return f"{zk_dir(node)}/data"


def server_id(cluster: Cluster, node: Node) -> int:
    """The node's ZooKeeper ``myid``: its position in the cluster, from 1."""
    names = [n.name for n in cluster.nodes]
    return names.index(node.name) + 1


def zoo_cfg(cluster: Cluster, node: Node, options: ZooKeeperOptions) -> str:
    """The node's zoo.cfg: the whole ensemble, this node's data dir and client address."""
    lines = [
        f"tickTime={options.tick_ms}",
        f"initLimit={options.init_limit}",
        f"syncLimit={options.sync_limit}",
        # snapshots and the transaction log both in dataDir (no dataLogDir): the one directory
        # the power-loss fault mounts its filesystem over (state_dir)
        f"dataDir={zk_data_dir(node)}",
        f"forceSync={'yes' if options.force_sync else 'no'}",
        f"clientPort={client_port(node)}",
        f"clientPortAddress={node.address}",
        # the admin HTTP server would take port 8080 on every node; srvr answers what we ask
        "admin.enableServer=false",
        "4lw.commands.whitelist=srvr,ruok,mntr",
        # the server's default caps client connections per address at 60: every bench client
        # reaches the servers from the control node's one address
        "maxClientCnxns=0",
        # snapshots and logs would otherwise pile up over a long run
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
    ]
    for member in cluster.nodes:
        member_offset = port_offset(member)
        lines.append(
            f"server.{server_id(cluster, member)}={member.address}:"
            f"{QUORUM_PORT + member_offset}:{ELECTION_PORT + member_offset}"
        )
    return "\n".join(lines) + "\n"


LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n
"""


def server_argv(node: Node, server_jar: str = SERVER_JAR) -> list[str]:
    """The JVM command line of the node's server (its log goes to the daemon's log)."""
    classpath = ":".join([zk_dir(node), server_jar, *LOGGING_JARS])
    return [
        JAVA,
        *JVM_FLAGS,
        f"-Dlog4j.configuration=file:{zk_dir(node)}/log4j.properties",
        "-Dzookeeper.jmx.log4j.disable=true",
        "-cp",
        classpath,
        MAIN_CLASS,
        f"{zk_dir(node)}/zoo.cfg",
    ]


def four_letter_word(address: str, port: int, word: str, *, timeout: float) -> str | None:
    """Send a ZooKeeper four-letter command; its answer, or None if the server does not answer."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(word.encode("ascii"))
            chunks = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", errors="replace")


def server_mode(node: Node, *, timeout: float = STATUS_TIMEOUT_S) -> str | None:
    """``leader``, ``follower`` or ``standalone`` from the node's ``srvr``; None if not serving."""
    answer = four_letter_word(node.address, client_port(node), "srvr", timeout=timeout)
    if answer is None:
        return None
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return None


def missing_software_command(server_jar: str = SERVER_JAR) -> str:
    """A shell check printing what a node lacks to run the server (nothing when all is there)."""
    jar = shlex.quote(server_jar)
    return f"[ -r {jar} ] || echo jar; command -v {JAVA} >/dev/null 2>&1 || echo java"


class ZooKeeperBackend(NodeDaemon):
    """Implements bench.protocols.Backend for a ZooKeeper ensemble (one server per node)."""

    daemon = DAEMON

    name = "zookeeper"
    # The local runtime's link proxy knows only lockd's peer ports; ZooKeeper's quorum and
    # election links would bypass it, so partitions there would not reach the ensemble.
    runtimes = ("netns", "ssh", "vagrant")

    def __init__(self, options: ZooKeeperOptions | None = None) -> None:
        self.options = options or ZooKeeperOptions()
        self._use_faketime = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ZooKeeperBackend:
        return cls(ZooKeeperOptions.from_mapping(options))

    def deploy(self, cluster: Cluster) -> None:
        """Check every node has the server, then write each node's config, myid and log setup."""
        self._use_faketime = "clock" in cluster.capabilities
        nodes = list(cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            lacks = list(
                pool.map(
                    lambda n: n.run(
                        missing_software_command(self.options.server_jar), check=False
                    ).stdout.split(),
                    nodes,
                )
            )
        missing = {n.name: what for n, what in zip(nodes, lacks, strict=True) if what}
        jar = self.options.server_jar
        if missing:
            detail = "; ".join(
                f"{name}: no {' and no '.join(jar if w == 'jar' else 'java' for w in what)}"
                for name, what in sorted(missing.items())
            )
            raise ClusterError(
                f"the zookeeper backend needs ZooKeeper on every node ({detail}): install the "
                f"Debian package '{DEBIAN_PACKAGE}' (it brings a Java runtime)"
            )
        for node in nodes:
            directory = shlex.quote(zk_dir(node))
            data = shlex.quote(zk_data_dir(node))
            config = zoo_cfg(cluster, node, self.options)
            node.run(
                f"mkdir -p {directory} {data} && "
                f"printf '%s' {shlex.quote(config)} > {directory}/zoo.cfg && "
                f"printf '%s' {shlex.quote(LOG4J_PROPERTIES)} > {directory}/log4j.properties && "
                f"echo {server_id(cluster, node)} > {data}/myid"
            )

    def state_dir(self, node: Node) -> str:
        """The server's dataDir: ``myid``, snapshots and the transaction log (StatefulBackend)."""
        return zk_data_dir(node)

    def server_programs(self, node: Node) -> list[str]:
        """The program that serves, for the clock-reach check (the JVM: libc's wall clock)."""
        return [JAVA]

    def start(self, node: Node) -> None:
        """Launch the node's server without waiting for its port.

        A JVM takes 5-30 s to open its client port on a busy two-core machine, and the runner
        starts nodes one after another; the ensemble is ready when it has a leader, which the
        runner waits for (``recovery_bound``).
        """
        argv = server_argv(node, self.options.server_jar)
        start_daemon(node, DAEMON, argv, faketime=self._use_faketime)

    def wipe(self, node: Node) -> None:
        """Kill the server if it runs and delete its snapshots and logs (keeps ``myid``)."""
        kill_daemon(node, DAEMON)
        data = shlex.quote(zk_data_dir(node))
        node.run(f"[ -d {data} ] && find {data} -mindepth 1 ! -name myid -delete || true")

    def leader(self, cluster: Cluster) -> str | None:
        """The node whose server says ``Mode: leader``, once a majority of servers serve.

        None if no server leads, two claim to, or fewer than a majority answer as leader or
        follower (a server syncing with a new leader answers "not currently serving"), so
        the runner's wait for a leader is a wait for an ensemble clients can use.
        """
        nodes = list(cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            modes = list(pool.map(server_mode, nodes))
        leaders = [n.name for n, mode in zip(nodes, modes, strict=True) if mode == "leader"]
        serving = sum(1 for mode in modes if mode in ("leader", "follower"))
        if len(leaders) != 1 or serving <= len(nodes) // 2:
            return None
        return leaders[0]

    def hosts_for(self, cluster: Cluster, node: Node) -> list[str]:
        """The ``host:port`` list a client on ``node``'s slot is given (``connect_to``)."""
        own = f"{node.address}:{client_port(node)}"
        if self.options.connect_to == "own":
            return [own]
        return [own, *(f"{n.address}:{client_port(n)}" for n in cluster.nodes if n is not node)]

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        return await open_zookeeper_client(
            self.hosts_for(cluster, node),
            ttl=ttl,
            process=process,
            tick_ms=self.options.tick_ms,
            lease_from=self.options.lease_from,
        )
