"""A libvirtd of the bench's own, inside a network namespace the bench creates and removes.

The VMs of the vagrant runtime must not put a network into the machine's root namespace (no
virbr0, no vagrant-libvirt management bridge there): test traffic may only go to loopback or to
namespaces the bench made. So ``vm_host_up`` makes namespace ``<prefix>-virt`` and runs libvirtd
in it, in a private mount namespace whose /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/log/libvirt and /var/cache/libvirt are directories of the cluster: every bridge, dnsmasq,
qemu process, disk image and libvirt object it makes lives in that namespace and that directory.
Vagrant (in the root namespace) talks to it through its unix socket; the control node reaches
the VMs' network (``mgmt_subnet``, a libvirt network in ``route`` mode) through one veth pair,
``<prefix>-vh`` (root side, first address of ``link_subnet``) to ``<prefix>-vn`` (second
address), and one route. As with the netns runtime, everything is recorded in
``cluster_dir/vmhost.json`` before it is created, so ``vm_host_down`` removes it all even after
an ``up`` that died half-way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.cluster.processes import process_alive, process_name
from bench.cluster.recorded_setup import set_up_recorded
from lockbench.errors import ClusterError

STATE_FILE = "vmhost.json"
LIBVIRT_DIR = "libvirt"
# Where libvirtd keeps its configuration and state: each is a directory of the cluster,
# bind-mounted over the system path in libvirtd's own mount namespace.
LIBVIRT_PATHS: dict[str, str] = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
LIBVIRTD = "/usr/sbin/libvirtd"
LIBVIRTD_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
MAX_PREFIX_LEN = 9  # "<prefix>-virt" and "<prefix>-mgmt" stay within 15 bytes

# libvirtd's own configuration: only root reaches its socket (a 0700 cluster directory);
# qemu runs as root so it can read the box's kernel where Vagrant keeps it, without cgroups,
# security drivers or virtlogd (none of them is set up in a bench namespace).
LIBVIRTD_CONF = """\
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:stderr"
"""
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
"""


@dataclass(frozen=True)
class VmHostState:
    """Everything ``vm_host_up`` creates, recorded before creating it."""

    prefix: str
    namespace: str
    host_veth: str
    inner_veth: str
    link_subnet: str
    mgmt_subnet: str
    libvirt_dir: str
    libvirtd_pid: int | None = None

    @property
    def host_address(self) -> str:
        return str(ipaddress.IPv4Network(self.link_subnet).network_address + 1)

    @property
    def inner_address(self) -> str:
        return str(ipaddress.IPv4Network(self.link_subnet).network_address + 2)

    @property
    def socket(self) -> Path:
        return Path(self.libvirt_dir) / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """The libvirt URI of this libvirtd (what virsh and vagrant-libvirt are given)."""
        return f"qemu:///system?socket={self.socket}"

    @property
    def mgmt_network(self) -> str:
        """The name of the libvirt network the VMs' only NIC is on."""
        return f"{self.prefix}-mgmt"

    def save(self, cluster_dir: Path) -> None:
        path = cluster_dir / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @staticmethod
    def load(cluster_dir: Path) -> VmHostState | None:
        path = cluster_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"{path}: unreadable VM host state ({exc}); remove by hand") from exc
        return VmHostState(**raw)


def _run(
    argv: list[str], *, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise ClusterError(
            f"control node: `{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout}"
        )
    return result


def plan_vm_host(cluster_dir: Path, prefix: str, mgmt_subnet: str, link_subnet: str) -> VmHostState:
    """Names and addresses for a VM host; a bad prefix or subnet is an error naming it."""
    if not prefix or len(prefix) > MAX_PREFIX_LEN or not prefix.replace("-", "").isalnum():
        raise ClusterError(
            f"VM host prefix {prefix!r} must be 1-{MAX_PREFIX_LEN} letters, digits or '-'"
        )
    networks = []
    for what, subnet in (("VM subnet", mgmt_subnet), ("link subnet", link_subnet)):
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise ClusterError(f"{what} {subnet!r} is not an IPv4 network: {exc}") from exc
        if network.prefixlen > 24 if what == "VM subnet" else network.prefixlen > 30:
            raise ClusterError(f"{what} {subnet} is too small")
        networks.append(network)
    if networks[0].overlaps(networks[1]):
        raise ClusterError(f"VM subnet {mgmt_subnet} and link subnet {link_subnet} overlap")
    return VmHostState(
        prefix=prefix,
        namespace=f"{prefix}-virt",
        host_veth=f"{prefix}-vh",
        inner_veth=f"{prefix}-vn",
        link_subnet=str(networks[1]),
        mgmt_subnet=str(networks[0]),
        libvirt_dir=str(cluster_dir / LIBVIRT_DIR),
    )


def _preflight(state: VmHostState) -> None:
    if os.geteuid() != 0:
        raise ClusterError("the vagrant runtime's VM host needs root (a namespace and libvirtd)")
    for tool in ("ip", "unshare", "mount", LIBVIRTD, "virsh"):
        if shutil.which(tool) is None:
            raise ClusterError(f"control node: {tool} not found (run bash scripts/setup-vm.sh)")
    if state.namespace in _run(["ip", "netns", "list"]).stdout.split():
        raise ClusterError(
            f"network namespace {state.namespace} already exists and is not this cluster's "
            "(another VM cluster with the same prefix? choose another --prefix)"
        )
    links = _run(["ip", "-o", "link", "show"]).stdout
    if f": {state.host_veth}:" in links or f": {state.host_veth}@" in links:
        raise ClusterError(f"interface {state.host_veth} already exists and is not this cluster's")
    taken = [ipaddress.IPv4Network(state.mgmt_subnet), ipaddress.IPv4Network(state.link_subnet)]
    for line in _run(["ip", "-o", "-4", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
            if any(address.ip in network for network in taken):
                raise ClusterError(
                    f"{address} on {fields[1]} is inside the VM host's subnets "
                    f"({state.mgmt_subnet}, {state.link_subnet}); choose others"
                )


def vm_host_up(
    cluster_dir: Path,
    *,
    prefix: str = "lbm",
    mgmt_subnet: str = "10.77.12.0/24",
    link_subnet: str = "10.77.13.0/24",
) -> VmHostState:
    """Make the namespace, veth and route, and start libvirtd in it; undone on any failure."""
    cluster_dir = cluster_dir.resolve()
    state = plan_vm_host(cluster_dir, prefix, mgmt_subnet, link_subnet)
    if (cluster_dir / STATE_FILE).exists():
        raise ClusterError(
            f"{cluster_dir} already holds a VM host (or a half-finished one): "
            "run `lockbench cluster down` first"
        )
    _preflight(state)
    return set_up_recorded(cluster_dir, state, _create, vm_host_down)


def _create(cluster_dir: Path, state: VmHostState) -> VmHostState:
    prefixlen = ipaddress.IPv4Network(state.link_subnet).prefixlen
    in_ns = ["ip", "netns", "exec", state.namespace]
    _run(["ip", "netns", "add", state.namespace])
    _run([*in_ns, "ip", "link", "set", "lo", "up"])
    _run(["ip", "link", "add", state.host_veth, "type", "veth", "peer", "name", state.inner_veth])
    _run(["ip", "link", "set", state.inner_veth, "netns", state.namespace])
    _run(["ip", "addr", "add", f"{state.host_address}/{prefixlen}", "dev", state.host_veth])
    _run(["ip", "link", "set", state.host_veth, "up"])
    inner = f"{state.inner_address}/{prefixlen}"
    _run([*in_ns, "ip", "addr", "add", inner, "dev", state.inner_veth])
    _run([*in_ns, "ip", "link", "set", state.inner_veth, "up"])
    # The one way into the VMs' network from the root namespace: this route over our veth.
    _run(["ip", "route", "add", state.mgmt_subnet, "via", state.inner_address])
    libvirt_dir = Path(state.libvirt_dir)
    for sub in LIBVIRT_PATHS:
        (libvirt_dir / sub).mkdir(parents=True, exist_ok=True)
    (libvirt_dir / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (libvirt_dir / "etc" / "qemu.conf").write_text(QEMU_CONF)
    (libvirt_dir / "etc" / "libvirt.conf").write_text("")
    state = _start_libvirtd(cluster_dir, state)
    _define_mgmt_network(state)
    return state


def _start_libvirtd(cluster_dir: Path, state: VmHostState) -> VmHostState:
    libvirt_dir = Path(state.libvirt_dir)
    mounts = []
    for sub, target in LIBVIRT_PATHS.items():
        # The mount points are libvirt's packaged directories; create any a minimal install lacks.
        Path(target).mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount --bind {libvirt_dir / sub} {target}")
    script = " && ".join([*mounts, f"exec {LIBVIRTD} --pid-file {libvirt_dir / 'libvirtd.pid'}"])
    log_file = (libvirt_dir / "libvirtd.log").open("ab")
    with log_file:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                state.namespace,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # ip, unshare and sh all exec: the process started is libvirtd itself.
    state = VmHostState(**{**asdict(state), "libvirtd_pid": process.pid})
    state.save(cluster_dir)
    deadline = time.monotonic() + LIBVIRTD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(
                f"libvirtd in {state.namespace} exited with {process.returncode}: "
                f"{_tail(libvirt_dir / 'libvirtd.log')}"
            )
        if state.socket.exists() and virsh(state, "version", check=False).returncode == 0:
            return state
        time.sleep(0.2)
    raise ClusterError(
        f"libvirtd in {state.namespace} did not answer within {LIBVIRTD_START_TIMEOUT_S} s: "
        f"{_tail(libvirt_dir / 'libvirtd.log')}"
    )


def _define_mgmt_network(state: VmHostState) -> None:
    """The VMs' network: a libvirt bridge in ``route`` mode (no NAT, and the namespace has no
    way out), DHCP for the VMs, reached from the control node through the veth."""
    network = ipaddress.IPv4Network(state.mgmt_subnet)
    gateway = network.network_address + 1
    first, last = network.network_address + 11, network.network_address + 99
    xml = f"""<network>
  <name>{state.mgmt_network}</name>
  <forward mode='route'/>
  <bridge name='{state.prefix}-br' stp='off' delay='0'/>
  <ip address='{gateway}' netmask='{network.netmask}'>
    <dhcp><range start='{first}' end='{last}'/></dhcp>
  </ip>
</network>
"""
    path = Path(state.libvirt_dir) / "mgmt-network.xml"
    path.write_text(xml)
    virsh(state, "net-define", str(path))
    virsh(state, "net-start", state.mgmt_network)


def virsh(state: VmHostState, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One virsh command against this VM host's libvirtd."""
    return _run(["virsh", "-c", state.uri, *args], check=check)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _remove_libvirt_objects(state: VmHostState, removed: list[str]) -> None:
    """Destroy and undefine every domain and network libvirtd knows (best effort, bounded)."""
    domains = virsh(state, "list", "--all", "--name", check=False)
    for name in domains.stdout.split() if domains.returncode == 0 else []:
        virsh(state, "destroy", name, check=False)
        virsh(state, "undefine", name, "--remove-all-storage", check=False)
        removed.append(f"libvirt domain {name}")
    networks = virsh(state, "net-list", "--all", "--name", check=False)
    for name in networks.stdout.split() if networks.returncode == 0 else []:
        virsh(state, "net-destroy", name, check=False)
        virsh(state, "net-undefine", name, check=False)
        removed.append(f"libvirt network {name}")


def _stop(pids: dict[int, str], removed: list[str]) -> None:
    for pid, what in sorted(pids.items()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            removed.append(what)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def vm_host_down(cluster_dir: Path) -> list[str]:
    """Remove everything ``vm_host_up`` made: libvirt's domains and networks, every process in
    the namespace (libvirtd, qemu, dnsmasq: by PID), the namespace, veth, route and directory."""
    cluster_dir = cluster_dir.resolve()
    state = VmHostState.load(cluster_dir)
    removed: list[str] = []
    if state is None:
        return removed
    if state.socket.exists():
        _remove_libvirt_objects(state, removed)
    exists = state.namespace in _run(["ip", "netns", "list"], check=False).stdout.split()
    victims: dict[int, str] = {}
    pid = state.libvirtd_pid
    if pid and process_alive(pid) and process_name(pid) == "libvirtd":
        victims[pid] = f"libvirtd pid {pid}"
    if exists:
        pids = _run(["ip", "netns", "pids", state.namespace], check=False).stdout.split()
        for word in pids:
            if word.isdigit() and int(word) not in victims:
                victims[int(word)] = f"process {word} ({process_name(int(word))})"
    _stop(victims, removed)
    route = _run(["ip", "route", "show", state.mgmt_subnet], check=False).stdout
    if f"via {state.inner_address}" in route:
        _run(["ip", "route", "del", state.mgmt_subnet], check=False)
        removed.append(f"route {state.mgmt_subnet}")
    if exists and _run(["ip", "netns", "del", state.namespace], check=False).returncode == 0:
        removed.append(f"namespace {state.namespace}")
    if _run(["ip", "link", "show", state.host_veth], check=False).returncode == 0:
        _run(["ip", "link", "del", state.host_veth], check=False)
        removed.append(f"link {state.host_veth}")
    libvirt_dir = Path(state.libvirt_dir)
    if libvirt_dir.is_dir():
        shutil.rmtree(libvirt_dir, ignore_errors=True)
        removed.append(f"directory {libvirt_dir}")
    (cluster_dir / STATE_FILE).unlink(missing_ok=True)
    return removed
