"""Redis servers (Debian's redis-server, 7.0) on the bench's nodes: config, daemon, persistence.

The ``redis`` backend runs one server (on the first node; the others stay idle), the ``redlock``
backend one independent server on every node. Either way each server is daemon ``redis`` through
``lockbench.daemon``, configured by ``{data_dir}/redis.conf`` (written by the bench, so the
Debian default config plays no part), with its data in ``{data_dir}/redis``, port 6379 plus the
node's ``port_offset``.

Persistence is what the Redlock restart anomaly is about, so it is an option, not a default left
to chance: ``appendonly: false`` (the default) keeps nothing across a restart (Debian's stock
config snapshots at most once a minute, which is the same for runs this short);
``appendonly: true`` writes every command to the append-only file, fsynced per ``appendfsync``
(``always``, ``everysec``, or ``no``: left to the kernel).

Clock faults reach Redis through the bench's wall-clock preload (lockbench.clock_preload;
libfaketime could not be used: redis-server does not even start under Debian's 0.9.10, whose
initialisation recurses through jemalloc's clock read). Redis expires keys by its wall clock, so
a jump forward expires them early. The server reports the clock it sees (``TIME``), which the
clock nemesis reads to check that each clock action reached it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from bench.backends.node_daemon import NodeDaemon, clear_data_dir, port_offset
from bench.backends.server_binaries import ServerBinary, require_server_binaries
from lockbench.daemon import kill_daemon, stop_daemon
from lockbench.deploy import write_node_file
from lockbench.errors import ConfigError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node

PORT = 6379
DAEMON = "redis"
REDIS = ServerBinary("/usr/bin/redis-server", "redis-server")
APPENDFSYNC_MODES: tuple[str, ...] = ("always", "everysec", "no")


@dataclass(frozen=True, slots=True)
class RedisServerOptions:
    """How each Redis server persists its data (see the module docstring)."""

    appendonly: bool = False
    appendfsync: str = "everysec"

    @staticmethod
    def parse(options: Mapping[str, Any], backend: str, extra: frozenset[str]) -> dict[str, Any]:
        """Check the server keys; return the remaining (backend-specific) ones unchanged."""
        known = frozenset({"appendonly", "appendfsync"}) | extra
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"backend_options: unknown key(s) {', '.join(unknown)} for the {backend} "
                f"backend (known: {', '.join(sorted(known))})"
            )
        appendonly = options.get("appendonly", False)
        if not isinstance(appendonly, bool):
            raise ConfigError(f"backend_options: appendonly must be true or false: {appendonly!r}")
        appendfsync = options.get("appendfsync", "everysec")
        if appendfsync not in APPENDFSYNC_MODES:
            raise ConfigError(
                f"backend_options: appendfsync must be one of {', '.join(APPENDFSYNC_MODES)}: "
                f"{appendfsync!r}"
            )
        return {k: v for k, v in options.items() if k in extra}

    @staticmethod
    def from_mapping(options: Mapping[str, Any]) -> RedisServerOptions:
        return RedisServerOptions(
            appendonly=bool(options.get("appendonly", False)),
            appendfsync=str(options.get("appendfsync", "everysec")),
        )


def redis_port(node: Node) -> int:
    return PORT + port_offset(node)


def redis_endpoint(node: Node) -> str:
    return f"{node.address}:{redis_port(node)}"


def config_path(node: Node) -> str:
    return f"{node.data_dir}/redis.conf"


def redis_data_dir(node: Node) -> str:
    return f"{node.data_dir}/redis"


def redis_config(node: Node, options: RedisServerOptions) -> str:
    """The server's whole configuration (no include of Debian's redis.conf)."""
    lines = [
        f"bind {node.address}",
        f"port {redis_port(node)}",
        "protected-mode no",
        "daemonize no",
        'logfile ""',  # stdout: the daemon's log
        f"dir {redis_data_dir(node)}",
        'save ""',
        f"appendonly {'yes' if options.appendonly else 'no'}",
        f"appendfsync {options.appendfsync}",
    ]
    return "\n".join(lines) + "\n"


class RedisServers(NodeDaemon):
    """Deploys, starts and faults Redis servers on ``server_nodes(cluster)`` (Backend methods).

    Nodes without a server accept the same calls and do nothing: a fault aimed at an idle node
    reaches no lock service, as on a real deployment where that machine runs none.
    """

    name = "redis-servers"
    daemon = DAEMON
    runtimes = ("netns", "ssh", "vagrant", "local")

    def __init__(self, server_options: RedisServerOptions | None = None) -> None:
        self.server_options = server_options or RedisServerOptions()
        self._servers: tuple[str, ...] | None = None

    def server_programs(self, node: Node) -> list[str]:
        """The program that serves (for the clock-reach check: C, libc's clock)."""
        return [REDIS.program] if self.runs_on(node) else []

    def server_clock(self, node: Node) -> float | None:
        """The wall clock the node's Redis sees (``TIME``); None if it does not answer."""
        if not self.runs_on(node):
            return None
        host, port = redis_endpoint(node).rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), socket_timeout=1, socket_connect_timeout=1)
        try:
            seconds, microseconds = client.time()
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()
        return float(seconds) + float(microseconds) / 1e6

    def server_nodes(self, cluster: Cluster) -> Sequence[Node]:
        """The nodes that run a server (all of them unless a subclass says otherwise)."""
        return list(cluster.nodes)

    def runs_on(self, node: Node) -> bool:
        return self._servers is None or node.name in self._servers

    def deploy(self, cluster: Cluster) -> None:
        """Check the nodes have redis-server, stop servers an earlier run left, write configs and
        clear old data: every run starts with empty servers."""
        require_server_binaries(cluster, self.name, [REDIS])
        servers = list(self.server_nodes(cluster))
        self._servers = tuple(node.name for node in servers)

        def prepare(node: Node) -> None:
            stop_daemon(node, DAEMON)
            clear_data_dir(node, redis_data_dir(node), recreate=True)
            write_node_file(node, config_path(node), redis_config(node, self.server_options))

        on_each_node(f"preparing {self.name}", servers, prepare)
        idle = [node for node in cluster.nodes if node.name not in self._servers]
        # an empty data directory on idle nodes too: a power-loss fault mounts its filesystem
        # on every node's state_dir
        on_each_node(
            f"preparing {self.name}'s idle nodes",
            idle,
            lambda node: node.run(f"mkdir -p {shlex.quote(redis_data_dir(node))}"),
        )

    def state_dir(self, node: Node) -> str:
        """Where the server keeps its append-only file (the power-loss fault's filesystem)."""
        return redis_data_dir(node)

    def server_argv(self, node: Node) -> list[str]:
        return [REDIS.program, config_path(node)]

    def ready_port(self, node: Node) -> int | None:
        return redis_port(node)

    def wipe(self, node: Node) -> None:
        if self.runs_on(node):
            kill_daemon(node, DAEMON)
            clear_data_dir(node, redis_data_dir(node), recreate=True)
