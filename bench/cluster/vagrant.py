"""The vagrant runtime: five Debian 12 VMs from vagrant/Vagrantfile, reached over SSH.

SSH goes to each VM's private-network address (from vagrant/nodes.yaml, the same file the
Vagrantfile reads) with the user and key that ``vagrant ssh-config`` reports; the host keys are
recorded at ``up`` into the cluster's own known_hosts, so later connections are pinned.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.cluster.inventory import DEFAULT_DATA_ROOT, Inventory, NodeSpec, save_inventory
from bench.cluster.keys import scan_host_key
from lockbench.deploy import PROJECT_ROOT
from lockbench.errors import ClusterError, ConfigError

VAGRANT_DIR = PROJECT_ROOT / "vagrant"
INVENTORY_FILE = "inventory.yaml"
VAGRANT_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class VagrantNode:
    """A VM as nodes.yaml defines it."""

    name: str
    ip: str


def load_vagrant_nodes(vagrant_dir: Path = VAGRANT_DIR) -> tuple[VagrantNode, ...]:
    path = vagrant_dir / "nodes.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    entries = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: key 'nodes' must list the VMs as {{name, ip}}")
    nodes = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
            raise ConfigError(f"{path}: nodes[{i}]: needs a string 'name'")
        if not isinstance(entry.get("ip"), str):
            raise ConfigError(f"{path}: nodes[{i}]: needs a string 'ip'")
        nodes.append(VagrantNode(name=entry["name"], ip=entry["ip"]))
    return tuple(nodes)


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """``vagrant ssh-config`` output as {host: {lowercased option: value}}."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key.lower() == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current.setdefault(key.lower(), value)
    return hosts


def inventory_from_ssh_config(
    ssh_config: str,
    nodes: tuple[VagrantNode, ...],
    cluster_dir: Path,
    known_hosts: Path | None,
) -> Inventory:
    """The inventory for the VMs: private addresses, vagrant's user and per-VM key."""
    hosts = parse_ssh_config(ssh_config)
    specs = []
    for node in nodes:
        options = hosts.get(node.name)
        if options is None:
            raise ClusterError(
                f"{node.name}: missing from `vagrant ssh-config` (is the VM up? `vagrant status`)"
            )
        key_file = options.get("identityfile")
        if not key_file:
            raise ClusterError(f"{node.name}: `vagrant ssh-config` names no IdentityFile")
        specs.append(
            NodeSpec(
                name=node.name,
                address=node.ip,
                ssh_port=22,
                user=options.get("user", "vagrant"),
                key_file=os.path.expanduser(key_file),
                data_dir=f"{DEFAULT_DATA_ROOT}/{node.name}",
            )
        )
    return Inventory(
        runtime="vagrant", nodes=tuple(specs), cluster_dir=cluster_dir, known_hosts=known_hosts
    )


def _vagrant(args: list[str], vagrant_dir: Path, *, capture: bool = True) -> str:
    if shutil.which("vagrant") is None:
        raise ClusterError(
            "vagrant not found on the control node: install Vagrant and a provider "
            "(VirtualBox or libvirt); see docs/runtimes.md"
        )
    env = {**os.environ, "VAGRANT_CWD": str(vagrant_dir)}
    result = subprocess.run(
        ["vagrant", *args],
        env=env,
        capture_output=capture,
        text=True,
        timeout=VAGRANT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or "").strip()[-800:] if capture else "see output above"
        raise ClusterError(f"`vagrant {shlex.join(args)}` failed in {vagrant_dir}: {detail}")
    return result.stdout or ""


def vagrant_up(cluster_dir: Path, vagrant_dir: Path = VAGRANT_DIR) -> Inventory:
    """``vagrant up`` (provisions on first boot), then record host keys and the inventory."""
    cluster_dir = cluster_dir.resolve()
    nodes = load_vagrant_nodes(vagrant_dir)
    _vagrant(["up"], vagrant_dir, capture=False)
    ssh_config = _vagrant(["ssh-config"], vagrant_dir)
    cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir.chmod(0o700)
    known_hosts = cluster_dir / "known_hosts"
    inventory = inventory_from_ssh_config(ssh_config, nodes, cluster_dir, known_hosts)
    lines = [scan_host_key(spec.name, spec.address, spec.ssh_port) for spec in inventory.nodes]
    known_hosts.write_text("".join(lines))
    known_hosts.chmod(0o600)
    save_inventory(inventory, cluster_dir / INVENTORY_FILE)
    return inventory


def vagrant_down(
    cluster_dir: Path, vagrant_dir: Path = VAGRANT_DIR, *, destroy: bool = False
) -> list[str]:
    """``vagrant halt`` (or ``destroy -f``) and forget the cluster's inventory and host keys."""
    cluster_dir = cluster_dir.resolve()
    _vagrant(["destroy", "-f"] if destroy else ["halt"], vagrant_dir, capture=False)
    removed = ["VMs destroyed" if destroy else "VMs halted"]
    for name in (INVENTORY_FILE, "known_hosts"):
        path = cluster_dir / name
        if path.exists():
            path.unlink()
            removed.append(f"file {path}")
    return removed
