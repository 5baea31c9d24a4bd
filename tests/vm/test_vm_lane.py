"""Real VMs (the vagrant runtime, docs/runtimes.md): one VM up, deployed and answering, with no VM
network in the root namespace (the smoke); three VMs under a partition and a clock step (the full
lane). Software-emulated VMs are slow here, so both lanes run only when asked:
``LOCKBENCH_VM=smoke`` (one VM, a few minutes) or ``LOCKBENCH_VM=1`` (both lanes)."""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backends.etcd import EtcdBackend, client_port
from bench.backends.reference import ReferenceBackend, fetch_status
from bench.cluster import ClusterHandle, load_inventory, open_cluster
from bench.cluster.processes import process_alive
from bench.cluster.runtimes import cluster_down, cluster_up
from bench.cluster.vagrant import BENCH_BOX, VM_STATE_FILE, box_kernel
from bench.cluster.vm_host import VmHostState
from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.errors import ClusterError
from lockbench.history import read_history
from lockbench.protocols import Node
from nemesis.system_clock import step_to
from tests.bench.runner.runner_support import write_test_file
from tests.support.waiting import wait_until

PREFIX = "lbm"
SUBNET = "10.77.12.0/24"
LANE = os.environ.get("LOCKBENCH_VM", "")


def _box_missing() -> bool:
    try:
        box_kernel()
    except ClusterError:
        return True
    return False


pytestmark = [
    pytest.mark.vm,
    pytest.mark.process,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace, libvirtd)"),
    pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant not installed"),
    pytest.mark.skipif(_box_missing(), reason=f"box {BENCH_BOX} not built here"),
    pytest.mark.skipif(
        LANE not in ("smoke", "1"),
        reason="real VMs run only with LOCKBENCH_VM=smoke (one VM) or LOCKBENCH_VM=1 (all)",
    ),
]
full_lane = pytest.mark.skipif(
    LANE != "1", reason="the three-VM lane runs only with LOCKBENCH_VM=1 (docs/runtimes.md: times)"
)


def _ps(pid: int) -> str:
    return subprocess.run(
        ["ps", "-o", "comm=", "-p", str(pid)], capture_output=True, text=True
    ).stdout.strip()


def _root_namespace_view(state: VmHostState, addresses: list[str]) -> None:
    """No VM network in the root namespace: no bridge of libvirt's, one route to the VMs' subnet
    and it is ours (over the bench's veth); libvirtd, qemu and dnsmasq all live in the bench's
    namespace."""
    bridges = subprocess.run(
        ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{PREFIX}-br" not in bridges, bridges
    assert "virbr" not in bridges, bridges
    # the one address of the VMs' subnets in the root namespace: our veth's
    addresses_here = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    in_vm_subnets = [
        line.split()[1]
        for line in addresses_here
        if " inet 10.77.12." in line or " inet 10.77.13." in line
    ]
    assert in_vm_subnets == [state.host_veth], addresses_here
    routes = subprocess.run(["ip", "-o", "route"], capture_output=True, text=True).stdout
    ours = [line for line in routes.splitlines() if line.startswith(("10.77.12.", "10.77.13."))]
    assert any(line.startswith(f"{SUBNET} via {state.inner_address} ") for line in ours), ours
    assert all(f"dev {state.host_veth} " in f"{line} " for line in ours), ours
    for address in addresses:
        assert address.startswith("10.77.12."), address
        route = subprocess.run(
            ["ip", "route", "get", address], capture_output=True, text=True, check=True
        ).stdout
        assert f"dev {state.host_veth}" in route, route
    in_namespace = subprocess.run(
        ["ip", "netns", "pids", state.namespace], capture_output=True, text=True, check=True
    ).stdout.split()
    names = {_ps(int(pid)) for pid in in_namespace}
    assert {"libvirtd", "qemu-system-x86", "dnsmasq"} <= names, names
    assert state.libvirtd_pid is not None
    assert str(state.libvirtd_pid) in in_namespace


def _nothing_left(state: VmHostState, pids: list[str]) -> None:
    assert (
        state.namespace
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert state.host_veth not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert "10.77.12." not in routes, routes
    assert "10.77.13." not in routes, routes
    alive = [pid for pid in pids if process_alive(int(pid))]
    assert not alive, [(_ps(int(p)), p) for p in alive]


@pytest.fixture
def one_vm(tmp_path: Path) -> Iterator[ClusterHandle]:
    cluster_dir = tmp_path / "vm1"
    try:
        inventory = cluster_up("vagrant", cluster_dir, prefix=PREFIX, subnet=SUBNET, nodes=1)
        with open_cluster(inventory) as cluster:
            yield cluster
    finally:
        cluster_down(cluster_dir)


@pytest.mark.timeout(1200)
def test_one_vm_comes_up_takes_a_deploy_and_lockd_answers(one_vm: ClusterHandle) -> None:
    cluster_dir = one_vm.inventory.cluster_dir
    state = VmHostState.load(cluster_dir)
    assert state is not None
    accel = json.loads((cluster_dir / VM_STATE_FILE).read_text())
    assert accel["accel"] in ("kvm", "qemu"), accel
    node = one_vm.nodes[0]
    assert node.name == "n1"
    # a non-root user with sudo, as on real VMs
    spec = one_vm.inventory.nodes[0]
    assert spec.user == "vagrant"
    assert node.run("id -un").stdout.strip() == "root"  # its commands go through sudo -n
    _root_namespace_view(state, [node.address])

    backend = ReferenceBackend.from_options({"tick_ms": 200})
    backend.deploy(one_vm)
    backend.start(node)
    try:
        status = wait_until(
            lambda: (s := fetch_status(node)) is not None and s.get("role") == "leader" and s,
            timeout=180,
            interval=1.0,
            what="lockd on the VM to answer /status as leader",
        )
        assert status["role"] == "leader", status
    finally:
        backend.stop(node)
    pids = subprocess.run(
        ["ip", "netns", "pids", state.namespace], capture_output=True, text=True
    ).stdout.split()
    cluster_down(cluster_dir)
    _nothing_left(state, pids)


@pytest.fixture(scope="module")
def three_vms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """Three VMs for the module; LOCKBENCH_VM_INVENTORY=FILE uses three already up instead
    (left up afterwards), to rerun the lane without waiting for VMs to boot."""
    if LANE != "1":
        pytest.skip("the three-VM lane runs only with LOCKBENCH_VM=1")
    existing = os.environ.get("LOCKBENCH_VM_INVENTORY")
    if existing:
        with open_cluster(load_inventory(Path(existing))) as cluster:
            assert cluster.runtime == "vagrant"
            assert len(cluster.nodes) == 3
            yield cluster
        return
    cluster_dir = tmp_path_factory.mktemp("vms") / "vm3"
    try:
        inventory = cluster_up("vagrant", cluster_dir, prefix=PREFIX, subnet=SUBNET, nodes=3)
        with open_cluster(inventory) as cluster:
            yield cluster
    finally:
        cluster_down(cluster_dir)


def _etcd_clock_offset_s(node: Node) -> float:
    """etcd's own clock (its HTTP Date header, one-second resolution) minus ours."""
    before = time.time()
    url = f"http://{node.address}:{client_port(node)}/version"
    with urllib.request.urlopen(url, timeout=10) as response:
        date = response.headers["Date"]
    after = time.time()
    return email.utils.parsedate_to_datetime(date).timestamp() - (before + after) / 2


def _sync_active(node: Node) -> bool:
    return node.run("systemctl is-active chrony", check=False).stdout.strip() == "active"


@full_lane
@pytest.mark.timeout(1200)
def test_etcd_on_a_vm_sees_the_vms_clock_step(three_vms: ClusterHandle) -> None:
    etcd = EtcdBackend.from_options({"heartbeat_ms": 300, "election_ms": 3000})
    etcd.deploy(three_vms)
    for node in three_vms.nodes:
        etcd.start(node)
    stepped, other = three_vms.nodes[0], three_vms.nodes[1]
    state = VmHostState.load(three_vms.inventory.cluster_dir)
    assert state is not None
    _root_namespace_view(state, [node.address for node in three_vms.nodes])
    try:
        assert abs(_etcd_clock_offset_s(stepped)) < 3
        assert _sync_active(stepped)
        answer = step_to(stepped, 300_000.0)
        assert answer["stopped"] == ["chrony"], answer
        assert not _sync_active(stepped)  # no time sync undoes the step in the window
        assert abs(_etcd_clock_offset_s(stepped) - 300) < 3
        assert abs(_etcd_clock_offset_s(other)) < 3
        back = step_to(stepped, 0.0)
        assert back["restarted"] == ["chrony"], back
        assert abs(_etcd_clock_offset_s(stepped)) < 3
        assert _sync_active(stepped)
        assert stepped.run("test -e /var/lib/lockbench/n1/clock.system", check=False).exit_code
    finally:
        step_to(stepped, 0.0)
        for node in three_vms.nodes:
            etcd.stop(node)


def _vm_test(tmp_path: Path, cluster: ClusterHandle, name: str, **keys: object) -> Path:
    test: dict[str, object] = {
        "inventory": str(cluster.inventory.cluster_dir / "inventory.yaml"),
        "nodes": len(cluster.nodes),
        "backend": "reference",
        "workload": "mutex",
        "workload_options": {"locks": 2, "hold": 0.05, "think": 0.1, "acquire_timeout": 10},
        "resource_mode": "fenced",
        "concurrency": 3,
    }
    return write_test_file(tmp_path, name=name, **{**test, **keys})


CLOCK_JUMP = {"fault": "clock", "mode": "bump", "offset_ms": 20000, "target": "leader"}


@full_lane
@pytest.mark.timeout(1800)
def test_default_workload_with_a_partition_and_a_clock_step_is_valid_on_vms(
    three_vms: ClusterHandle, tmp_path: Path
) -> None:
    path = _vm_test(
        tmp_path,
        three_vms,
        "lbm-vm-valid",
        time_limit=40,
        nemesis=[
            {"fault": "partition", "shape": "isolate-leader", "schedule": {"at": [[6, 14]]}},
            {**CLOCK_JUMP, "schedule": {"at": [[20, 28]]}},
        ],
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert outcome.exit_code == 0, (outcome.errors, results.get("checkers"))
    assert results["verdict"] == "valid"
    history = read_history(outcome.run_dir / "history.jsonl")
    clocks = [op.value for op in history if op.process == "nemesis" and op.f == "clock"]
    stepped = [c for c in clocks if c.get("stepped_ms")]
    assert stepped, clocks
    (node, offset), *_ = stepped[0]["stepped_ms"].items()
    assert offset == 20000.0
    reach = stepped[0]["reach"][node]
    assert reach["reached"] is True, reach
    assert reach["by"] == "system", reach
    assert any(op.f == "start-partition" for op in history if op.process == "nemesis")


@full_lane
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("unsafe", "expected"),
    [(["wallclock-expiry"], "invalid"), ([], "valid")],
    ids=["bug", "control"],
)
def test_lockds_wallclock_expiry_bug_is_caught_under_a_vm_clock_step(
    three_vms: ClusterHandle, tmp_path: Path, unsafe: list[str], expected: str
) -> None:
    """The bug switch under the leader's clock jumping 30 s: caught; the same test without the
    switch (the control): valid, so what caught it is the bug, not the test."""
    path = _vm_test(
        tmp_path,
        three_vms,
        "lbm-vm-wallclock",
        time_limit=40,
        backend_options={"unsafe": unsafe},
        # one lock held for seconds at a time by four processes: when the leader's clock jumps
        # past every session's deadline, a holder is almost always inside its critical section
        # while a waiter, reconnected, is granted the lock; the jump is larger than the ttl
        # the runtime's floor gives software-emulated VMs (10 s)
        workload_options={"locks": 1, "hold": 2.0, "think": 0.2, "acquire_timeout": 10},
        concurrency=4,
        nemesis=[{**CLOCK_JUMP, "offset_ms": 30000, "schedule": {"interval": 12, "duration": 6}}],
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert results["verdict"] == expected, results.get("checkers")
    assert results["checkers"]["fault-reach"]["verdict"] == "valid"
    if expected == "invalid":
        caught = {n for n, c in results["checkers"].items() if c.get("verdict") == "invalid"}
        assert caught & {"linearizable", "mutual-exclusion"}, caught
