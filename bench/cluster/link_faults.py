"""Partitions and a bad network for the local runtime, through the link proxy (bench.cluster.proxy).

Local nodes share one loopback, so iptables and tc cannot tell them apart. Instead every directed
peer link ``src -> dst`` runs through its own port of one proxy process, and a
``LinkFaultController`` (``cluster.link_faults`` on a local cluster, None on other runtimes)
changes the links' faults live over the proxy's control port.

Ports: node ``i``'s lockd uses 7000/7001/7080 plus its ``port_offset``; the ports right after its
peer port (7002, 7003, ... plus the offset) are the proxy's listening ports for the links *from*
node ``i``, one per other node in inventory order, and the control port is the next free one after
``n1``'s links. That fits while ``nodes <= offset gap - 2`` (8 nodes with the default step of 10);
a cluster that does not fit gets no proxy, and its runtime then lacks partition and netem.

The proxy is a daemon of the cluster (``{cluster_dir}/linkproxy/linkproxy.pid`` and ``.log``,
no libfaketime), started by the backend's deploy (``start_proxy``, which knows the real peer
ports) and killed by ``local_down``.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import proxy
from bench.cluster.inventory import Inventory, NodeSpec
from bench.cluster.local_node import LocalNode
from bench.cluster.proxy import ControlRequest, Link, LinkFault, ProxyConfig, ProxyError, Route
from lockbench.daemon import daemon_pid, start_daemon, stop_daemon
from lockbench.errors import ClusterError, ConfigError

PROXY_DIR = "linkproxy"
PROXY_DAEMON = "linkproxy"
PROXY_CONFIG_FILE = "links.json"
# lockd's ports on a node before its offset (bench.backends.reference owns them; repeated here so
# the runtime does not import a backend): the proxy's ports must stay clear of them.
LOCKD_CLIENT_PORT = 7000
LOCKD_PEER_PORT = 7001
LOCKD_HTTP_PORT = 7080
FIRST_PROXY_PORT = LOCKD_PEER_PORT + 1
CONTROL_TIMEOUT_S = 5.0
PROXY_START_TIMEOUT_S = 10.0

NodeOrLink = str | tuple[str, str]


class LinkFaultError(ClusterError):
    """The link proxy is not running or refused a request; says what to do about it."""


@dataclass(frozen=True, slots=True)
class PortPlan:
    """Where the proxy listens: one port per directed link, plus its control port."""

    control_port: int
    link_ports: Mapping[Link, int]


def plan_ports(inventory: Inventory) -> PortPlan | None:
    """The proxy's ports for a local cluster, or None if they do not fit between lockd's."""
    specs = inventory.nodes
    if len(specs) < 2:
        return None
    names = [spec.name for spec in specs]
    link_ports: dict[Link, int] = {}
    for spec in specs:
        others = [name for name in names if name != spec.name]
        for index, dst in enumerate(others):
            link_ports[Link(spec.name, dst)] = FIRST_PROXY_PORT + spec.port_offset + index
    control_port = FIRST_PROXY_PORT + specs[0].port_offset + len(specs) - 1
    taken = {
        base + spec.port_offset
        for spec in specs
        for base in (LOCKD_CLIENT_PORT, LOCKD_PEER_PORT, LOCKD_HTTP_PORT)
    }
    ours = [*link_ports.values(), control_port]
    if len(set(ours)) != len(ours) or taken & set(ours) or max(ours) > 65535:
        return None
    return PortPlan(control_port, link_ports)


@dataclass(frozen=True, slots=True)
class LinkStatus:
    link: Link
    fault: LinkFault
    connections: int
    bytes_delivered: int


@dataclass(frozen=True, slots=True)
class LinkFaultState:
    """Every directed link as the proxy reports it."""

    links: tuple[LinkStatus, ...]

    def faulty(self) -> dict[Link, LinkFault]:
        return {s.link: s.fault for s in self.links if not s.fault.healthy}

    def blocked(self) -> frozenset[Link]:
        return frozenset(s.link for s in self.links if s.fault.blocked)

    def describe(self) -> dict[str, dict[str, Any]]:
        """The faulty links as plain data (for a nemesis's history record)."""
        return {str(link): fault.as_dict() for link, fault in sorted(self.faulty().items())}

    @staticmethod
    def from_response(response: Mapping[str, Any]) -> LinkFaultState:
        links = tuple(
            LinkStatus(
                Link(item["src"], item["dst"]),
                LinkFault(
                    bool(item["blocked"]),
                    float(item["delay_ms"]),
                    float(item["jitter_ms"]),
                    float(item["loss"]),
                ),
                int(item["connections"]),
                int(item["bytes_delivered"]),
            )
            for item in response["links"]
        )
        return LinkFaultState(links)


class LinkFaultController:
    """Blocks and degrades the directed peer links of a local cluster through its link proxy."""

    def __init__(self, inventory: Inventory, plan: PortPlan) -> None:
        self.inventory = inventory
        self.plan = plan
        self.node_names: tuple[str, ...] = tuple(spec.name for spec in inventory.nodes)
        self.host = inventory.nodes[0].address
        directory = inventory.cluster_dir / PROXY_DIR
        self._proxy_node = LocalNode(
            NodeSpec(name=PROXY_DAEMON, address=self.host, data_dir=str(directory))
        )

    @staticmethod
    def for_inventory(inventory: Inventory) -> LinkFaultController | None:
        """A controller for a local cluster whose ports leave room for the proxy, else None."""
        if inventory.runtime != "local":
            return None
        plan = plan_ports(inventory)
        return LinkFaultController(inventory, plan) if plan is not None else None

    @property
    def proxy_dir(self) -> Path:
        return Path(self._proxy_node.data_dir)

    def proxy_port(self, src: str, dst: str) -> int:
        """The port ``src`` must connect to in order to reach ``dst``'s peer port."""
        try:
            return self.plan.link_ports[Link(src, dst)]
        except KeyError:
            raise ConfigError(
                f"no link {src}->{dst} in this cluster (nodes: {', '.join(self.node_names)})"
            ) from None

    # -- the proxy process -----------------------------------------------------------------------

    def start_proxy(self, peer_ports: Mapping[str, int]) -> bool:
        """Make the proxy forward each link to ``dst``'s real peer port; True if (re)started.

        A proxy already serving exactly these routes keeps running (lockd's connections survive a
        redeploy) but is healed: a deployed cluster starts with a healthy network even if a bench
        died mid-fault.
        """
        missing = sorted(set(self.node_names) - set(peer_ports))
        if missing:
            raise ConfigError(f"start_proxy: no peer port for node(s) {', '.join(missing)}")
        routes = tuple(
            Route(link, port, self.inventory.node(link.dst).address, peer_ports[link.dst])
            for link, port in sorted(self.plan.link_ports.items())
        )
        config = ProxyConfig(self.host, self.plan.control_port, routes).to_json()
        config_file = self.proxy_dir / PROXY_CONFIG_FILE
        running = self.proxy_running()
        if running and config_file.exists() and config_file.read_text() == config:
            self._request(ControlRequest("heal"))
            return False
        if running:
            stop_daemon(self._proxy_node, PROXY_DAEMON)
        self.proxy_dir.mkdir(parents=True, exist_ok=True)
        config_file.write_text(config)
        argv = [sys.executable, "-I", proxy.__file__, "--config", str(config_file)]
        start_daemon(
            self._proxy_node,
            PROXY_DAEMON,
            argv,
            faketime=False,
            ready_port=self.plan.control_port,
            ready_timeout=PROXY_START_TIMEOUT_S,
        )
        return True

    def stop_proxy(self) -> bool:
        """Stop the proxy (every peer link is then down); False if it was not running."""
        if not self.proxy_running():
            return False
        stop_daemon(self._proxy_node, PROXY_DAEMON)
        return True

    def proxy_running(self) -> bool:
        return self.proxy_dir.is_dir() and daemon_pid(self._proxy_node, PROXY_DAEMON) is not None

    # -- faults ----------------------------------------------------------------------------------

    def partition(self, grudge: Mapping[str, Collection[str]]) -> LinkFaultState:
        """Block exactly the links ``b -> a`` for every ``b`` in ``grudge[a]`` (a cannot hear
        from b); every other link is unblocked. Delay and loss settings are kept."""
        blocked: set[Link] = set()
        for hearer, sources in grudge.items():
            self._check_names([hearer, *sources], "partition")
            blocked.update(Link(source, hearer) for source in sources if source != hearer)
        return self._request(ControlRequest("block", tuple(sorted(blocked))))

    def set_quality(
        self,
        nodes_or_links: Collection[NodeOrLink],
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
    ) -> LinkFaultState:
        """Delay/jitter/loss on links: a node name means every link *from* that node (what it
        sends, as netem on its interface would), a ``(src, dst)`` pair that one direction.
        Zeros restore the links' quality; ``blocked`` is left as it is."""
        links: set[Link] = set()
        for item in nodes_or_links:
            if isinstance(item, str):
                self._check_names([item], "set_quality")
                links.update(Link(item, dst) for dst in self.node_names if dst != item)
            else:
                src, dst = item
                self._check_names([src, dst], "set_quality")
                links.add(Link(src, dst))
        try:
            quality = LinkFault(delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss)
        except ProxyError as exc:
            raise ConfigError(f"set_quality: {exc}") from None
        return self._request(ControlRequest("quality", tuple(sorted(links)), quality))

    def heal(self) -> LinkFaultState:
        """Every link healthy again; a proxy that is not running has nothing to heal."""
        if not self.proxy_running():
            return LinkFaultState(())
        return self._request(ControlRequest("heal"))

    def state(self) -> LinkFaultState:
        return self._request(ControlRequest("state"))

    def _check_names(self, names: Collection[str], where: str) -> None:
        unknown = sorted(set(names) - set(self.node_names))
        if unknown:
            raise ConfigError(
                f"{where}: no node(s) {', '.join(unknown)} in this cluster "
                f"(nodes: {', '.join(self.node_names)})"
            )

    def _request(self, request: ControlRequest) -> LinkFaultState:
        address = (self.host, self.plan.control_port)
        try:
            with socket.create_connection(address, timeout=CONTROL_TIMEOUT_S) as conn:
                conn.sendall(proxy.encode_request(request))
                with conn.makefile("rb") as stream:
                    line = stream.readline(proxy.MAX_CONTROL_LINE_BYTES)
        except OSError as exc:
            raise LinkFaultError(
                f"link proxy of {self.inventory.cluster_dir} at {address[0]}:{address[1]} "
                f"did not answer ({exc}); it starts when the backend is deployed "
                "(`lockbench cluster deploy`); its log is "
                f"{self.proxy_dir / (PROXY_DAEMON + '.log')}"
            ) from exc
        try:
            response = json.loads(line)
        except ValueError:
            raise LinkFaultError(f"link proxy answered {line[:200]!r}, not JSON") from None
        if not isinstance(response, dict) or not response.get("ok"):
            error = response.get("error") if isinstance(response, dict) else response
            raise LinkFaultError(f"link proxy refused {request.op}: {error}")
        return LinkFaultState.from_response(response)

    def __repr__(self) -> str:
        return f"LinkFaultController({self.inventory.cluster_dir}, port {self.plan.control_port})"
