"""The netns runtime: five network namespaces on a bridge, each with its own sshd (needs root).

Namespaces share this machine's filesystem and process table but not its network, so each node
has its own address, its own iptables and its own sshd, and the bench reaches it over SSH exactly
as it reaches a VM. The control node (this process) sits on the bridge at the subnet's first
address. Everything created is listed in ``cluster_dir/netns.json`` *before* it is created, so
``netns_down`` can undo even a half-finished ``netns_up``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.cluster.inventory import Inventory, NodeSpec, save_inventory
from bench.cluster.keys import generate_keypair, known_hosts_line
from bench.cluster.processes import process_alive, process_name
from bench.cluster.recorded_setup import set_up_recorded
from lockbench.errors import ClusterError

log = logging.getLogger(__name__)

STATE_FILE = "netns.json"
INVENTORY_FILE = "inventory.yaml"
SSHD = "/usr/sbin/sshd"
# Linux interface names are at most 15 bytes: "<prefix>-v5h" must fit.
MAX_PREFIX_LEN = 10
FIRST_NODE_HOST = 11  # n1 is x.x.x.11, like the lockd config example
SSHD_START_TIMEOUT_S = 5.0
# What netns_up writes into the cluster directory (removed by netns_down; the state file last).
CREATED_FILES: tuple[str, ...] = (
    "keys",
    "sshd",
    "nodes",
    "known_hosts",
    INVENTORY_FILE,
    STATE_FILE,
)


@dataclass(frozen=True)
class NetnsState:
    """Everything ``netns_up`` creates, recorded before creating it."""

    prefix: str
    subnet: str
    bridge: str
    namespaces: tuple[str, ...]
    host_veths: tuple[str, ...]
    addresses: tuple[str, ...]
    iptables_rules: tuple[tuple[str, ...], ...] = ()

    def save(self, cluster_dir: Path) -> None:
        path = cluster_dir / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @staticmethod
    def load(cluster_dir: Path) -> NetnsState | None:
        path = cluster_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"{path}: unreadable netns state ({exc}); remove by hand") from exc
        return NetnsState(
            prefix=raw["prefix"],
            subnet=raw["subnet"],
            bridge=raw["bridge"],
            namespaces=tuple(raw["namespaces"]),
            host_veths=tuple(raw["host_veths"]),
            addresses=tuple(raw["addresses"]),
            iptables_rules=tuple(tuple(r) for r in raw.get("iptables_rules", ())),
        )


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterError(
            f"control node: `{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout}"
        )
    return result


def _plan(prefix: str, subnet: str, nodes: int) -> NetnsState:
    if not prefix or len(prefix) > MAX_PREFIX_LEN or not prefix.replace("-", "").isalnum():
        raise ClusterError(
            f"netns prefix {prefix!r} must be 1-{MAX_PREFIX_LEN} letters, digits or '-'"
        )
    try:
        network = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise ClusterError(f"subnet {subnet!r} is not an IPv4 network: {exc}") from exc
    if network.num_addresses < FIRST_NODE_HOST + nodes + 1:
        raise ClusterError(f"subnet {subnet} is too small for {nodes} nodes (use a /24)")
    if not 1 <= nodes <= 50:
        raise ClusterError(f"a netns cluster has 1-50 nodes, not {nodes}")
    base = network.network_address
    return NetnsState(
        prefix=prefix,
        subnet=str(network),
        bridge=f"{prefix}-br",
        namespaces=tuple(f"{prefix}-n{i}" for i in range(1, nodes + 1)),
        host_veths=tuple(f"{prefix}-v{i}h" for i in range(1, nodes + 1)),
        addresses=tuple(str(base + FIRST_NODE_HOST - 1 + i) for i in range(1, nodes + 1)),
    )


def _preflight(state: NetnsState) -> None:
    if os.geteuid() != 0:
        raise ClusterError("the netns runtime needs root (try --runtime local without root)")
    for tool in ("ip", "iptables", "ssh-keygen", SSHD):
        if shutil.which(tool) is None:
            raise ClusterError(
                f"control node: {tool} not found (install iproute2, iptables, openssh-server)"
            )
    existing = set(_run(["ip", "netns", "list"]).stdout.split())
    taken = sorted(existing & set(state.namespaces))
    if taken:
        raise ClusterError(
            f"network namespace(s) {', '.join(taken)} already exist and are not this cluster's "
            "(another cluster with the same prefix? choose another --name/prefix)"
        )
    links = _run(["ip", "-o", "link", "show"]).stdout
    for name in (state.bridge, *state.host_veths):
        if f": {name}:" in links or f": {name}@" in links:
            raise ClusterError(f"interface {name} already exists and is not this cluster's")
    network = ipaddress.IPv4Network(state.subnet)
    for line in _run(["ip", "-o", "-4", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
            if address.ip in network:
                raise ClusterError(
                    f"subnet {state.subnet} is already in use on {fields[1]} "
                    f"({address}); choose another --subnet"
                )


def _sshd_config(cluster_dir: Path, index: int, address: str) -> Path:
    sshd_dir = cluster_dir / "sshd"
    config = sshd_dir / f"n{index}.conf"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}",
                "Port 22",
                f"HostKey {cluster_dir / 'keys' / f'n{index}_host_ed25519'}",
                f"AuthorizedKeysFile {cluster_dir / 'keys' / 'authorized_keys'}",
                f"PidFile {sshd_dir / f'n{index}.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "UseDNS no",
                "PrintMotd no",
                "MaxSessions 64",
                "MaxStartups 64:30:128",
                "",
            ]
        )
    )
    config.chmod(0o600)
    return config


def _wait_for_ports(addresses: Sequence[str], port: int, timeout: float) -> list[str]:
    """Addresses whose port still refuses connections after ``timeout``."""
    pending = list(addresses)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for address in pending:
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    pass
            except OSError:
                still.append(address)
        pending = still
        if pending:
            time.sleep(0.05)
    return pending


def netns_up(
    cluster_dir: Path, *, prefix: str = "lb", subnet: str = "10.77.0.0/24", nodes: int = 5
) -> Inventory:
    """Create the namespaces, bridge, keys and sshds; write and return the inventory.

    On any failure everything already created is removed again before the error is raised.
    """
    cluster_dir = cluster_dir.resolve()
    state = _plan(prefix, subnet, nodes)
    if (cluster_dir / STATE_FILE).exists() or (cluster_dir / INVENTORY_FILE).exists():
        raise ClusterError(
            f"{cluster_dir} already holds a netns cluster (or a half-finished one): "
            "run `lockbench cluster down` first"
        )
    _preflight(state)
    return set_up_recorded(cluster_dir, state, _create, netns_down)


def _create(cluster_dir: Path, state: NetnsState) -> Inventory:
    network = ipaddress.IPv4Network(state.subnet)
    bridge_address = f"{network.network_address + 1}/{network.prefixlen}"
    _run(["ip", "link", "add", state.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", bridge_address, "dev", state.bridge])
    _run(["ip", "link", "set", state.bridge, "up"])
    forward_policy = _run(["iptables", "-S", "FORWARD"], check=False).stdout
    if "-P FORWARD DROP" in forward_policy:
        rule = ("FORWARD", "-i", state.bridge, "-o", state.bridge, "-j", "ACCEPT")
        state = NetnsState(**{**asdict(state), "iptables_rules": (rule,)})
        state.save(cluster_dir)
        _run(["iptables", "-I", *rule])

    keys_dir = cluster_dir / "keys"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    (cluster_dir / "sshd").mkdir(mode=0o700, exist_ok=True)
    user_key = keys_dir / "id_ed25519"
    key_jobs = [(user_key, "lockbench-control")] + [
        (keys_dir / f"n{i}_host_ed25519", f"lockbench-n{i}")
        for i in range(1, len(state.namespaces) + 1)
    ]
    generate_keypair(key_jobs)
    authorized = keys_dir / "authorized_keys"
    authorized.write_text(user_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)

    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    nodes_dir = cluster_dir / "nodes"
    nodes_dir.mkdir(mode=0o700, exist_ok=True)
    specs: list[NodeSpec] = []
    known_hosts: list[str] = []
    for index, (namespace, veth, address) in enumerate(
        zip(state.namespaces, state.host_veths, state.addresses, strict=True), start=1
    ):
        inner = f"{state.prefix}-v{index}"
        _run(["ip", "netns", "add", namespace])
        _run(["ip", "link", "add", inner, "type", "veth", "peer", "name", veth])
        _run(["ip", "link", "set", inner, "netns", namespace])
        _run(["ip", "link", "set", veth, "master", state.bridge, "up"])
        in_ns = ["ip", "netns", "exec", namespace]
        _run([*in_ns, "ip", "addr", "add", f"{address}/{network.prefixlen}", "dev", inner])
        _run([*in_ns, "ip", "link", "set", inner, "up"])
        _run([*in_ns, "ip", "link", "set", "lo", "up"])
        config = _sshd_config(cluster_dir, index, address)
        sshd_log = cluster_dir / "sshd" / f"n{index}.log"
        _run([*in_ns, SSHD, "-f", str(config), "-E", str(sshd_log)])
        host_pub = keys_dir / f"n{index}_host_ed25519.pub"
        known_hosts.append(known_hosts_line(address, 22, host_pub))
        data_dir = nodes_dir / f"n{index}"
        data_dir.mkdir(mode=0o755, exist_ok=True)
        specs.append(
            NodeSpec(
                name=f"n{index}",
                address=address,
                key_file=str(user_key),
                data_dir=str(data_dir),
            )
        )
    known_hosts_file = cluster_dir / "known_hosts"
    known_hosts_file.write_text("".join(known_hosts))
    known_hosts_file.chmod(0o600)
    silent = _wait_for_ports(state.addresses, 22, SSHD_START_TIMEOUT_S)
    if silent:
        raise ClusterError(
            f"sshd did not start on {', '.join(silent)} within {SSHD_START_TIMEOUT_S} s "
            f"(see {cluster_dir / 'sshd'}/*.log)"
        )
    inventory = Inventory(
        runtime="netns",
        nodes=tuple(specs),
        cluster_dir=cluster_dir,
        known_hosts=known_hosts_file,
    )
    save_inventory(inventory, cluster_dir / INVENTORY_FILE)
    log.info("netns cluster up: %s on %s", ", ".join(state.namespaces), state.subnet)
    return inventory


def _kill_all(pids: dict[int, str], removed: list[str]) -> None:
    for pid, what in sorted(pids.items()):
        try:
            os.kill(pid, 9)
            removed.append(what)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3.0
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def netns_down(cluster_dir: Path) -> list[str]:  # noqa: C901, PLR0912 - one step per kind of leftover, each best-effort
    """Remove everything ``netns_up`` made (also after a half-finished up); returns what it removed.

    Kills the sshds by their pidfiles and every other process left in the namespaces, deletes the
    namespaces (which deletes their veths), host veths, the bridge and any iptables rule added,
    then what it wrote in the cluster directory (keys, sshd configs, node data, inventory).
    """
    cluster_dir = cluster_dir.resolve()
    state = NetnsState.load(cluster_dir)
    removed: list[str] = []
    if state is None:
        return removed
    victims: dict[int, str] = {}
    for pidfile in sorted((cluster_dir / "sshd").glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if process_alive(pid) and process_name(pid) == "sshd":
            victims[pid] = f"sshd pid {pid} ({pidfile.stem})"
    existing = set(_run(["ip", "netns", "list"], check=False).stdout.split())
    ours = [ns for ns in state.namespaces if ns in existing]
    for namespace in ours:
        for word in _run(["ip", "netns", "pids", namespace], check=False).stdout.split():
            if word.isdigit() and int(word) not in victims:
                victims[int(word)] = f"process {word} ({process_name(int(word))}) in {namespace}"
    _kill_all(victims, removed)
    for namespace in ours:
        if _run(["ip", "netns", "del", namespace], check=False).returncode == 0:
            removed.append(f"namespace {namespace}")
    for link in (*state.host_veths, state.bridge):
        if _run(["ip", "link", "show", link], check=False).returncode == 0:
            _run(["ip", "link", "del", link], check=False)
            removed.append(f"link {link}")
    for rule in state.iptables_rules:
        if _run(["iptables", "-C", *rule], check=False).returncode == 0:
            _run(["iptables", "-D", *rule], check=False)
            removed.append(f"iptables rule {' '.join(rule)}")
    for name in CREATED_FILES:
        path = cluster_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"directory {path}")
        elif path.exists():
            path.unlink()
            removed.append(f"file {path}")
    with contextlib.suppress(OSError):
        cluster_dir.rmdir()  # only if nothing else was put there
    return removed
