"""The reference lock server (lockd) as a bench backend, deployed with the cluster runtime code.

Each node gets ``{data_dir}/lockd.yaml`` (the config contract with reference_impl/server), lockd
keeps its data in ``{data_dir}/lockd`` and runs as daemon ``lockd`` (pidfile, log, libfaketime)
through ``bench.cluster.daemon``. Ports are 7000 (clients), 7001 (peers) and 7080 (HTTP status),
each plus the node's ``port_offset``.
"""

from __future__ import annotations

import inspect
import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import yaml

from bench.cluster.daemon import (
    kill_daemon,
    log_path,
    pidfile_path,
    signal_daemon,
    start_daemon,
    stop_daemon,
)
from bench.cluster.deploy import Wheel, deploy_project, node_program, write_node_file
from bench.errors import ConfigError
from bench.protocols import Cluster, LockClient, Node

CLIENT_PORT = 7000
PEER_PORT = 7001
HTTP_PORT = 7080
DAEMON = "lockd"
STATUS_TIMEOUT_S = 1.0
OPTION_KEYS: frozenset[str] = frozenset({"unsafe", "fsync", "tick_ms"})


@dataclass(frozen=True, slots=True)
class ReferenceOptions:
    """The test's ``backend_options`` for lockd: unsafe switches, fsync and the Raft tick."""

    unsafe: tuple[str, ...] = ()
    fsync: bool = True
    tick_ms: int = 50

    @staticmethod
    def from_mapping(options: Mapping[str, Any]) -> ReferenceOptions:
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise ConfigError(
                f"backend_options: unknown key(s) {', '.join(unknown)} for the reference "
                f"backend (known: {', '.join(sorted(OPTION_KEYS))})"
            )
        unsafe = options.get("unsafe", [])
        if not isinstance(unsafe, list | tuple) or not all(isinstance(u, str) for u in unsafe):
            raise ConfigError(f"backend_options: key 'unsafe' must be a list of names: {unsafe!r}")
        fsync = options.get("fsync", True)
        if not isinstance(fsync, bool):
            raise ConfigError(f"backend_options: key 'fsync' must be true or false: {fsync!r}")
        tick_ms = options.get("tick_ms", 50)
        if isinstance(tick_ms, bool) or not isinstance(tick_ms, int) or tick_ms <= 0:
            raise ConfigError(
                f"backend_options: key 'tick_ms' must be a positive integer: {tick_ms!r}"
            )
        return ReferenceOptions(unsafe=tuple(unsafe), fsync=fsync, tick_ms=tick_ms)


def _offset(node: Node) -> int:
    spec = getattr(node, "spec", None)
    offset = getattr(spec, "port_offset", 0)
    return offset if isinstance(offset, int) else 0


def client_port(node: Node) -> int:
    return CLIENT_PORT + _offset(node)


def peer_port(node: Node) -> int:
    return PEER_PORT + _offset(node)


def http_port(node: Node) -> int:
    return HTTP_PORT + _offset(node)


def config_path(node: Node) -> str:
    return f"{node.data_dir}/lockd.yaml"


def lockd_data_dir(node: Node) -> str:
    return f"{node.data_dir}/lockd"


def lockd_config(cluster: Cluster, node: Node, options: ReferenceOptions) -> str:
    """The node's lockd YAML (the contract with reference_impl/server).

    On a cluster with a link proxy (``cluster.link_faults``, the local runtime) every other
    member's ``peer_port`` is the proxy's port for the link from this node to that member, so the
    member tables differ per node; lockd uses peer addresses only to connect.
    """
    link_faults = getattr(cluster, "link_faults", None)

    def peer_port_seen_from_node(member: Node) -> int:
        if link_faults is None or member.name == node.name:
            return peer_port(member)
        port: int = link_faults.proxy_port(node.name, member.name)
        return port

    members = {
        member.name: {
            "host": member.address,
            "peer_port": peer_port_seen_from_node(member),
            "client_port": client_port(member),
            "http_port": http_port(member),
        }
        for member in cluster.nodes
    }
    document = {
        "id": node.name,
        "data_dir": lockd_data_dir(node),
        "members": members,
        "tick_ms": options.tick_ms,
        "fsync": options.fsync,
        "unsafe": list(options.unsafe),
    }
    return yaml.safe_dump(document, sort_keys=False)


def fetch_status(node: Node, *, timeout: float = STATUS_TIMEOUT_S) -> dict[str, Any] | None:
    """The node's ``/status`` JSON (role, term, leader), or None if it does not answer."""
    url = f"http://{node.address}:{http_port(node)}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return body if isinstance(body, dict) else None


class ReferenceBackend:
    """Implements bench.protocols.Backend for lockd on any runtime."""

    name = "reference"

    def __init__(
        self, options: ReferenceOptions | None = None, *, wheel: Wheel | None = None
    ) -> None:
        """``wheel``: deploy this prebuilt wheel instead of building the current tree."""
        self.options = options or ReferenceOptions()
        self.wheel = wheel
        self._use_faketime = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReferenceBackend:
        return cls(ReferenceOptions.from_mapping(options))

    def deploy(self, cluster: Cluster) -> None:
        """Install the project on every node and write each node's lockd config.

        With a link proxy (the local runtime) it is (re)started first, routing every peer link
        to the real peer ports, so partitions and netem can act on the links.
        """
        self._use_faketime = "clock" in cluster.capabilities
        link_faults = getattr(cluster, "link_faults", None)
        if link_faults is not None:
            link_faults.start_proxy({node.name: peer_port(node) for node in cluster.nodes})

        def configure(node: Node) -> None:
            text = lockd_config(cluster, node, self.options)
            write_node_file(node, config_path(node), text, require=[node_program(node, "lockd")])

        deploy_project(cluster, self.wheel, configure)

    def start(self, node: Node) -> None:
        argv = [
            node_program(node, "lockd"),
            "--config",
            config_path(node),
            "--pidfile",
            pidfile_path(node, DAEMON),
            "--log-file",
            log_path(node, DAEMON),
        ]
        start_daemon(node, DAEMON, argv, faketime=self._use_faketime, ready_port=peer_port(node))

    def stop(self, node: Node) -> None:
        stop_daemon(node, DAEMON)

    def kill(self, node: Node) -> None:
        kill_daemon(node, DAEMON)

    def pause(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "STOP")

    def resume(self, node: Node) -> None:
        signal_daemon(node, DAEMON, "CONT")

    def wipe(self, node: Node) -> None:
        """Kill lockd if it runs and delete its data (not its config, venv or logs)."""
        kill_daemon(node, DAEMON)
        node.run(f"rm -rf {shlex.quote(lockd_data_dir(node))}")

    def leader(self, cluster: Cluster) -> str | None:
        """The node that says it leads in the highest term any node reports; None if none."""
        nodes = list(cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            statuses = list(pool.map(fetch_status, nodes))
        best: tuple[int, str] | None = None
        for node, status in zip(nodes, statuses, strict=True):
            if status is None or status.get("role") != "leader":
                continue
            term = status.get("term")
            term = term if isinstance(term, int) else -1
            if best is None or term > best[0]:
                best = (term, node.name)
        return best[1] if best else None

    def log_files(self, node: Node) -> Sequence[str]:
        return [log_path(node, DAEMON)]

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        from bench.backends.reference_client import open_reference_client

        endpoints = [f"{n.address}:{client_port(n)}" for n in cluster.nodes]
        preferred = f"{node.address}:{client_port(node)}"
        client: Any = open_reference_client(endpoints, preferred, ttl=ttl, process=process)
        if inspect.isawaitable(client):
            client = await client
        return cast(LockClient, client)
