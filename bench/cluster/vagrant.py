"""The vagrant runtime: Debian 12 VMs from vagrant/Vagrantfile, reached over SSH as `vagrant`.

Two ways up. ``bench_vagrant_up`` (what ``lockbench cluster up --runtime vagrant`` does as root
on Linux) runs the VMs with vagrant-libvirt in the bench's own libvirtd inside a network
namespace (bench.cluster.vm_host), from the box built here (scripts/build-vm-box.sh), under KVM
when a probe shows KVM guests boot here and TCG otherwise (bench.cluster.vm_accel); each node's
address is the one ``vagrant ssh-config`` reports on that namespaced network. ``vagrant_up`` is a
by-hand set-up's ``vagrant up`` with the user's own provider; nodes are then reached on their
private-network addresses from vagrant/nodes.yaml. Either way the user and key come from
``vagrant ssh-config`` and the host keys are recorded at ``up`` into the cluster's own
known_hosts, so later connections are pinned.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.cluster.inventory import DEFAULT_DATA_ROOT, Inventory, NodeSpec, save_inventory
from bench.cluster.keys import scan_host_key
from bench.cluster.vm_accel import AccelChoice, choose_accel
from bench.cluster.vm_host import VmHostState, vm_host_down, vm_host_up
from lockbench.deploy import PROJECT_ROOT
from lockbench.errors import ClusterError, ConfigError

VAGRANT_DIR = PROJECT_ROOT / "vagrant"
INVENTORY_FILE = "inventory.yaml"
VAGRANT_TIMEOUT_S = 1800.0
VM_STATE_FILE = "vagrant.json"
VAGRANT_STATE_DIR = "vagrant"  # VAGRANT_DOTFILE_PATH: Vagrant's per-machine state, per cluster
BENCH_BOX = "lockbench/debian12"
VM_CACHE = Path(os.path.expanduser("~/.cache/lockbench/vm"))
# Every command and start-up wait on a software-emulated VM (NodeSpec.timeout_scale): starting
# lockd took 28 s there under load, against 15 s allowed on namespaces (docs/runtimes.md).
TCG_TIMEOUT_SCALE = 4.0


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
    *,
    address_from_ssh_config: bool = False,
    timeout_scale: float = 1.0,
) -> Inventory:
    """The inventory for the VMs: vagrant's user and per-VM key; the address is the node's
    private-network address, or (``address_from_ssh_config``) the HostName Vagrant reports."""
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
        address = node.ip
        ssh_port = 22
        if address_from_ssh_config:
            address = options.get("hostname", "")
            ssh_port = int(options.get("port", "22"))
            try:
                ipaddress.IPv4Address(address)
            except ValueError as exc:
                raise ClusterError(
                    f"{node.name}: `vagrant ssh-config` gives no IPv4 HostName ({address!r})"
                ) from exc
        specs.append(
            NodeSpec(
                name=node.name,
                address=address,
                ssh_port=ssh_port,
                user=options.get("user", "vagrant"),
                key_file=os.path.expanduser(key_file),
                data_dir=f"{DEFAULT_DATA_ROOT}/{node.name}",
                timeout_scale=timeout_scale,
            )
        )
    return Inventory(
        runtime="vagrant", nodes=tuple(specs), cluster_dir=cluster_dir, known_hosts=known_hosts
    )


def _vagrant_env(vagrant_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "VAGRANT_CWD": str(vagrant_dir), **(extra or {})}


def _vagrant(
    args: list[str],
    vagrant_dir: Path,
    *,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = VAGRANT_TIMEOUT_S,
) -> str:
    if shutil.which("vagrant") is None:
        raise ClusterError(
            "vagrant not found on the control node: install Vagrant and a provider "
            "(bash scripts/setup-vm.sh here; VirtualBox or libvirt elsewhere); see docs/runtimes.md"
        )
    try:
        result = subprocess.run(
            ["vagrant", *args],
            env=_vagrant_env(vagrant_dir, env),
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`vagrant {shlex.join(args)}` took more than {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stderr or "").strip() or (result.stdout or "").strip()
        detail = output[-800:] if capture else "see output above"
        if capture and not output:
            detail = f"exit status {result.returncode}, no output"
        raise ClusterError(f"`vagrant {shlex.join(args)}` failed in {vagrant_dir}: {detail}")
    return result.stdout or ""


def _record_host_keys(inventory: Inventory, known_hosts: Path) -> None:
    lines = [scan_host_key(spec.name, spec.address, spec.ssh_port) for spec in inventory.nodes]
    known_hosts.write_text("".join(lines))
    known_hosts.chmod(0o600)


def vagrant_up(cluster_dir: Path, vagrant_dir: Path = VAGRANT_DIR) -> Inventory:
    """``vagrant up`` with the user's own provider (a by-hand set-up: VirtualBox, or libvirt),
    then record host keys and the inventory (the nodes' private-network addresses)."""
    cluster_dir = cluster_dir.resolve()
    nodes = load_vagrant_nodes(vagrant_dir)
    _vagrant(["up"], vagrant_dir, capture=False)
    ssh_config = _vagrant(["ssh-config"], vagrant_dir)
    cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir.chmod(0o700)
    known_hosts = cluster_dir / "known_hosts"
    inventory = inventory_from_ssh_config(ssh_config, nodes, cluster_dir, known_hosts)
    _record_host_keys(inventory, known_hosts)
    save_inventory(inventory, cluster_dir / INVENTORY_FILE)
    return inventory


def vagrant_down(
    cluster_dir: Path, vagrant_dir: Path = VAGRANT_DIR, *, destroy: bool = False
) -> list[str]:
    """``vagrant halt`` (or ``destroy -f``) and forget the cluster's inventory and host keys.
    A cluster on the bench's own VM host is always destroyed, with the host (vm_host_down)."""
    cluster_dir = cluster_dir.resolve()
    if VmHostState.load(cluster_dir) is not None or (cluster_dir / VM_STATE_FILE).exists():
        return bench_vagrant_down(cluster_dir, vagrant_dir)
    _vagrant(["destroy", "-f"] if destroy else ["halt"], vagrant_dir, capture=False)
    removed = ["VMs destroyed" if destroy else "VMs halted"]
    return removed + _forget(cluster_dir)


def _forget(cluster_dir: Path) -> list[str]:
    removed = []
    for name in (INVENTORY_FILE, "known_hosts"):
        path = cluster_dir / name
        if path.exists():
            path.unlink()
            removed.append(f"file {path}")
    return removed


def box_kernel(box: str = BENCH_BOX) -> Path:
    """The kernel of the locally built box, where ``vagrant box add`` unpacked it."""
    home = Path(os.environ.get("VAGRANT_HOME", os.path.expanduser("~/.vagrant.d")))
    pattern = str(home / "boxes" / box.replace("/", "-VAGRANTSLASH-") / "*" / "libvirt")
    found = sorted(glob.glob(pattern))
    if not found or not (Path(found[-1]) / "vmlinuz").is_file():
        raise ClusterError(
            f"box {box} is not built on this machine: run `bash scripts/build-vm-box.sh` "
            "(docs/runtimes.md, vagrant)"
        )
    return Path(found[-1]) / "vmlinuz"


def link_subnet_for(subnet: str) -> str:
    """The veth link's /24: the one right after the VMs' subnet (10.77.12.0/24 -> 10.77.13.0/24)."""
    network = ipaddress.IPv4Network(subnet)
    return str(ipaddress.IPv4Network((int(network.network_address) + network.num_addresses, 24)))


def _preflight_bench(nodes: int, available: int) -> None:
    if os.geteuid() != 0:
        raise ClusterError("the vagrant runtime here needs root (its libvirtd runs in a namespace)")
    if not 1 <= nodes <= available:
        raise ClusterError(f"vagrant/nodes.yaml defines {available} VMs: ask for 1-{available}")
    if shutil.which("vagrant") is None:
        raise ClusterError("vagrant not found: run `bash scripts/setup-vm.sh` (docs/runtimes.md)")
    plugins = subprocess.run(
        ["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    if "vagrant-libvirt" not in plugins:
        raise ClusterError("the vagrant-libvirt plugin is missing: run `bash scripts/setup-vm.sh`")


def bench_vagrant_up(
    cluster_dir: Path,
    *,
    prefix: str = "lbm",
    subnet: str = "10.77.12.0/24",
    nodes: int = 5,
    vagrant_dir: Path = VAGRANT_DIR,
) -> Inventory:
    """VMs in the bench's own namespaced libvirtd; prints the accelerator chosen and why.

    Records what it made before making it (vm_host's state, then ``vagrant.json``), so
    ``bench_vagrant_down`` removes everything after a failure at any step; a failed up does so
    itself before raising.
    """
    cluster_dir = cluster_dir.resolve()
    defined = load_vagrant_nodes(vagrant_dir)
    _preflight_bench(nodes, len(defined))
    kernel = box_kernel()
    accel = choose_accel(kernel, VM_CACHE / "accel.json")
    print(f"vagrant: VMs run under {accel.label}: {accel.reason}", flush=True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    host = vm_host_up(
        cluster_dir, prefix=prefix, mgmt_subnet=subnet, link_subnet=link_subnet_for(subnet)
    )
    try:
        timings["vm_host_s"] = time.monotonic() - started
        env = {
            "VAGRANT_DOTFILE_PATH": str(cluster_dir / VAGRANT_STATE_DIR),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "LOCKBENCH_LIBVIRT_URI": host.uri,
            "LOCKBENCH_VM_DRIVER": accel.driver,
            "LOCKBENCH_VM_NETWORK": host.mgmt_network,
            "LOCKBENCH_VM_SUBNET": host.mgmt_subnet,
            "LOCKBENCH_VM_NODES": str(nodes),
        }
        _save_vm_state(cluster_dir, accel, env, timings)
        phase = time.monotonic()
        output = _vagrant(["up", "--provider=libvirt"], vagrant_dir, env=env)
        (cluster_dir / "vagrant-up.log").write_text(output)
        timings["vagrant_up_s"] = time.monotonic() - phase
        ssh_config = _vagrant(["ssh-config"], vagrant_dir, env=env)
        known_hosts = cluster_dir / "known_hosts"
        inventory = inventory_from_ssh_config(
            ssh_config,
            defined[:nodes],
            cluster_dir,
            known_hosts,
            address_from_ssh_config=True,
            timeout_scale=TCG_TIMEOUT_SCALE if accel.driver == "qemu" else 1.0,
        )
        _record_host_keys(inventory, known_hosts)
        save_inventory(inventory, cluster_dir / INVENTORY_FILE)
        timings["total_s"] = time.monotonic() - started
        _save_vm_state(cluster_dir, accel, env, timings)
        return inventory
    except BaseException:
        bench_vagrant_down(cluster_dir, vagrant_dir)
        raise


def _save_vm_state(
    cluster_dir: Path, accel: AccelChoice, env: Mapping[str, str], timings: Mapping[str, float]
) -> None:
    path = cluster_dir / VM_STATE_FILE
    state = {
        "accel": accel.driver,
        "accel_reason": accel.reason,
        "env": dict(env),
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)


def vm_accel_of(cluster_dir: Path) -> str | None:
    """``kvm`` or ``qemu`` (TCG) for a cluster made by bench_vagrant_up, else None."""
    try:
        accel = json.loads((cluster_dir / VM_STATE_FILE).read_text()).get("accel")
    except (OSError, ValueError):
        return None
    return accel if isinstance(accel, str) else None


def bench_vagrant_down(cluster_dir: Path, vagrant_dir: Path = VAGRANT_DIR) -> list[str]:
    """Remove the VMs and everything of their host: libvirt's domains, networks and disk images
    (with its directory), its processes by PID, the namespace, veth and route; then Vagrant's
    per-cluster state, the inventory and the pinned host keys. No ``vagrant destroy``: the
    domains and their storage are libvirt's, and go with it."""
    del vagrant_dir  # the VMs are removed through libvirt, not through Vagrant
    cluster_dir = cluster_dir.resolve()
    removed = vm_host_down(cluster_dir)
    state_dir = cluster_dir / VAGRANT_STATE_DIR
    if state_dir.is_dir():
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(f"directory {state_dir}")
    for name in (VM_STATE_FILE, "vagrant-up.log"):
        path = cluster_dir / name
        if path.exists():
            path.unlink()
            removed.append(f"file {path}")
    removed += _forget(cluster_dir)
    with contextlib.suppress(OSError):
        cluster_dir.rmdir()
    return removed


# Software-emulated VMs (TCG) run lockd and etcd many times slower than this machine and answer
# SSH in seconds: a test on them gets at least these timings, whatever its file says, so a slow
# VM is never mistaken for a failed server. Measured here: docs/runtimes.md, "vagrant".
TCG_TIMING_FLOORS: Mapping[str, float] = {
    "op_timeout": 10.0,
    "ttl": 10.0,
    "recovery_bound": 60.0,
    "leader_poll": 2.0,
}
# A leader killed on a software-emulated VM restarts and its cluster elects in up to ~10 s:
# the liveness checker's failover allowance (checker_options.failover; 5 s by default).
TCG_CHECKER_FLOORS: Mapping[str, float] = {"failover": 15.0}
TCG_BACKEND_FLOORS: Mapping[str, Mapping[str, int]] = {
    "reference": {"tick_ms": 250},
    "etcd": {"heartbeat_ms": 300, "election_ms": 3000},
}


def slow_vm_floors(cluster_dir: Path, backend: str) -> tuple[dict[str, float], dict[str, int]]:
    """The timing floors (test keys, backend options) for a cluster of bench_vagrant_up's:
    TCG's when its VMs are software-emulated, none under KVM or for other clusters."""
    if vm_accel_of(cluster_dir) != "qemu":
        return {}, {}
    return dict(TCG_TIMING_FLOORS), dict(TCG_BACKEND_FLOORS.get(backend, {}))
