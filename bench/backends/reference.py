"""The reference lock server (lockd) as a bench backend, deployed with the cluster runtime code.

Each node gets ``{data_dir}/lockd.yaml`` (the config contract with reference_impl/server), lockd
keeps its data in ``{data_dir}/lockd`` and runs as daemon ``lockd`` (pidfile, log, and the
wall-clock library when clock faults are armed) through ``lockbench.daemon``. Ports are
7000 (clients), 7001 (peers) and 7080 (HTTP status), each plus the node's ``port_offset``.

On SSH-reached nodes (netns, ssh, vagrant) the project is deployed as a wheel into a venv per
node. The local runtime's nodes are directories on the control machine itself, so lockd runs
from the control node's own interpreter (``sys.executable -m reference_impl.server.main``):
nothing to install, and no system Python with PyYAML needed, which a user without root lacks.
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from bench.backends.node_daemon import NodeDaemon, port_offset
from bench.backends.reference_client import REQUEST_TIMEOUT_S, open_reference_client
from lockbench.daemon import kill_daemon, log_path, start_daemon
from lockbench.deploy import Wheel, deploy_project, node_program, write_node_file
from lockbench.errors import ConfigError
from lockbench.protocols import Cluster, LockClient, Node, on_control_host, timeout_scale
from reference_impl.server.config import UNSAFE_SWITCHES

CLIENT_PORT = 7000
PEER_PORT = 7001
HTTP_PORT = 7080
DAEMON = "lockd"
STATUS_TIMEOUT_S = 1.0
OPTION_KEYS: frozenset[str] = frozenset({"unsafe", "fsync", "tick_ms"})
SERVER_MODULE = "reference_impl.server.main"
# The directory holding the reference_impl package this control node runs (for local nodes).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


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
        misspelt = sorted(set(unsafe) - set(UNSAFE_SWITCHES))
        if misspelt:  # lockd would refuse them only after the cluster is built and deployed
            raise ConfigError(
                f"backend_options: unknown unsafe switch(es) {', '.join(misspelt)} for lockd "
                f"(known: {', '.join(UNSAFE_SWITCHES)})"
            )
        fsync = options.get("fsync", True)
        if not isinstance(fsync, bool):
            raise ConfigError(f"backend_options: key 'fsync' must be true or false: {fsync!r}")
        tick_ms = options.get("tick_ms", 50)
        if isinstance(tick_ms, bool) or not isinstance(tick_ms, int) or tick_ms <= 0:
            raise ConfigError(
                f"backend_options: key 'tick_ms' must be a positive integer: {tick_ms!r}"
            )
        return ReferenceOptions(unsafe=tuple(unsafe), fsync=fsync, tick_ms=tick_ms)


def client_port(node: Node) -> int:
    return CLIENT_PORT + port_offset(node)


def peer_port(node: Node) -> int:
    return PEER_PORT + port_offset(node)


def http_port(node: Node) -> int:
    return HTTP_PORT + port_offset(node)


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


def fetch_status(node: Node, *, timeout: float | None = None) -> dict[str, Any] | None:
    """The node's ``/status`` JSON (role, term, leader), or None if it does not answer (within
    ``timeout``; by default 1 s times the node's timeout_scale)."""
    if timeout is None:
        timeout = STATUS_TIMEOUT_S * timeout_scale(node)
    url = f"http://{node.address}:{http_port(node)}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def runs_in_place(node: Node) -> bool:
    """True when lockd runs from this interpreter instead of a deployed venv (local runtime)."""
    return on_control_host(node)


def local_lockd_argv() -> list[str]:
    """The command that runs lockd from the control node's own interpreter and sources."""
    return [sys.executable, "-m", SERVER_MODULE]


def leader_from_statuses(
    names: Sequence[str], statuses: Sequence[Mapping[str, Any] | None]
) -> tuple[str | None, int | None]:
    """The node that says it leads in the highest term any leader reports, and that term."""
    best: tuple[int, str] | None = None
    for name, status in zip(names, statuses, strict=True):
        if status is None or status.get("role") != "leader":
            continue
        term = status.get("term")
        term = term if isinstance(term, int) and not isinstance(term, bool) else -1
        if best is None or term > best[0]:
            best = (term, name)
    if best is None:
        return None, None
    return best[1], (best[0] if best[0] >= 0 else None)


class ReferenceBackend(NodeDaemon):
    """Implements lockbench.protocols.Backend for lockd on any runtime."""

    name = "reference"
    daemon = DAEMON

    def __init__(
        self, options: ReferenceOptions | None = None, *, wheel: Wheel | None = None
    ) -> None:
        """``wheel``: deploy this prebuilt wheel instead of building the current tree."""
        self.options = options or ReferenceOptions()
        self.wheel = wheel
        # The term of the leader the last ``leader()`` call found (None: no leader or unknown);
        # the runner's leader observer records it beside the name.
        self.last_term: int | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReferenceBackend:
        return cls(ReferenceOptions.from_mapping(options))

    def deploy(self, cluster: Cluster) -> None:
        """Install the project on every node and write each node's lockd config.

        With a link proxy (the local runtime) it is (re)started first, routing every peer link
        to the real peer ports, so partitions and netem can act on the links. Local nodes get
        only their configs: lockd runs there from this interpreter (see the module docstring).
        """
        link_faults = getattr(cluster, "link_faults", None)
        if link_faults is not None:
            link_faults.start_proxy({node.name: peer_port(node) for node in cluster.nodes})

        nodes = list(cluster.nodes)
        if nodes and all(runs_in_place(node) for node in nodes):
            for node in nodes:
                write_node_file(node, config_path(node), lockd_config(cluster, node, self.options))
            return

        def configure(node: Node) -> None:
            text = lockd_config(cluster, node, self.options)
            write_node_file(node, config_path(node), text, require=[node_program(node, "lockd")])

        deploy_project(cluster, self.wheel, configure)

    def lockd_argv(self, node: Node) -> list[str]:
        """lockd's command line on ``node``. The pidfile is lockbench.daemon's alone, so
        lockd is not given ``--pidfile`` (see lockbench.daemon's docstring)."""
        program = local_lockd_argv() if runs_in_place(node) else [node_program(node, "lockd")]
        return [*program, "--config", config_path(node), "--log-file", log_path(node, DAEMON)]

    def server_programs(self, node: Node) -> list[str]:
        """The program lockd runs as (for the clock-reach check: a Python, so libc's clock)."""
        return self.lockd_argv(node)[:1]

    def server_clock(self, node: Node) -> float | None:
        """The wall clock lockd itself sees (``wall_time`` in ``/status``); None if silent."""
        status = fetch_status(node)
        wall = None if status is None else status.get("wall_time")
        return float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None

    def start(self, node: Node) -> None:
        # In place, the sources must be importable whatever the daemon's working directory.
        env = {"PYTHONPATH": str(SOURCE_ROOT)} if runs_in_place(node) else None
        start_daemon(
            node,
            DAEMON,
            self.lockd_argv(node),
            env=env,
            ready_port=peer_port(node),
        )

    def wipe(self, node: Node) -> None:
        """Kill lockd if it runs and delete its data (not its config, venv or logs)."""
        kill_daemon(node, DAEMON)
        node.run(f"rm -rf {shlex.quote(lockd_data_dir(node))}")

    def leader_status(self, cluster: Cluster) -> tuple[str | None, int | None]:
        """(leader, term): the node that says it leads in the highest term any leader reports.

        (None, None) if no node answers as leader. Also kept in ``last_term``.
        """
        nodes = list(cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            statuses = list(pool.map(fetch_status, nodes))
        leader, term = leader_from_statuses([node.name for node in nodes], statuses)
        self.last_term = term
        return leader, term

    def leader(self, cluster: Cluster) -> str | None:
        """The node that says it leads in the highest term any node reports; None if none."""
        return self.leader_status(cluster)[0]

    def state_dir(self, node: Node) -> str:
        """lockd's data directory: its Raft WAL and snapshots (a StatefulBackend, lockbench)."""
        return lockd_data_dir(node)

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        endpoints = [f"{n.address}:{client_port(n)}" for n in cluster.nodes]
        preferred = f"{node.address}:{client_port(node)}"
        # slow nodes (software-emulated VMs) get proportionally longer per-request timeouts
        client: Any = open_reference_client(
            endpoints,
            preferred,
            ttl=ttl,
            process=process,
            request_timeout=REQUEST_TIMEOUT_S * timeout_scale(node),
        )
        if inspect.isawaitable(client):
            client = await client
        return cast(LockClient, client)
