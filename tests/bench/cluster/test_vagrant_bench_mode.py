"""The bench's own VM host (plan, addresses) and the VM-only rules of clock faults, without VMs.

The VMs themselves run in tests/vm/ (marker ``vm``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backends.etcd import EtcdBackend
from bench.cluster.inventory import Inventory, NodeSpec, load_inventory, save_inventory
from bench.cluster.vagrant import inventory_from_ssh_config, link_subnet_for, load_vagrant_nodes
from bench.cluster.vm_accel import ACCEL_ENV, choose_accel
from bench.cluster.vm_host import plan_vm_host
from bench.runner.config import load_test_config
from lockbench.clock_preload import steps_system_clock
from lockbench.errors import ClusterError, ConfigError
from lockbench.protocols import ClusterFacts
from nemesis.spec import parse_clock
from nemesis.system_clock import heal_command, parse_state, step_command
from tests.bench.runner.runner_support import write_test_file

RECORDED = Path(__file__).parent / "data" / "vagrant_libvirt_ssh_config.txt"


def test_the_link_subnet_is_the_24_after_the_vms_subnet() -> None:
    assert link_subnet_for("10.77.12.0/24") == "10.77.13.0/24"
    assert link_subnet_for("10.77.255.0/24") == "10.78.0.0/24"


def test_plan_names_everything_after_the_prefix(tmp_path: Path) -> None:
    state = plan_vm_host(tmp_path, "lbm", "10.77.12.0/24", "10.77.13.0/24")
    assert (state.namespace, state.host_veth, state.inner_veth) == ("lbm-virt", "lbm-vh", "lbm-vn")
    assert (state.host_address, state.inner_address) == ("10.77.13.1", "10.77.13.2")
    assert state.mgmt_network == "lbm-mgmt"
    assert state.uri == f"qemu:///system?socket={tmp_path}/libvirt/run/libvirt-sock"


@pytest.mark.parametrize(
    ("prefix", "mgmt", "link", "message"),
    [
        ("much-too-long", "10.77.12.0/24", "10.77.13.0/24", "prefix 'much-too-long'"),
        ("lbm", "10.77.12.0/24", "10.77.12.0/24", "overlap"),
        ("lbm", "10.77.12.0/28", "10.77.13.0/24", "too small"),
        ("lbm", "10.77.12.300/24", "10.77.13.0/24", "not an IPv4 network"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_problem(
    tmp_path: Path, prefix: str, mgmt: str, link: str, message: str
) -> None:
    with pytest.raises(ClusterError, match=message):
        plan_vm_host(tmp_path, prefix, mgmt, link)


def test_inventory_takes_each_vms_address_from_vagrant_ssh_config(tmp_path: Path) -> None:
    nodes = load_vagrant_nodes()[:3]
    text = RECORDED.read_text()
    known_hosts = tmp_path / "known_hosts"
    inventory = inventory_from_ssh_config(
        text, nodes, tmp_path, known_hosts, address_from_ssh_config=True
    )
    assert inventory.runtime == "vagrant"
    assert [n.address for n in inventory.nodes] == ["10.77.12.52", "10.77.12.81", "10.77.12.17"]
    first = inventory.nodes[0]
    assert (first.user, first.ssh_port) == ("vagrant", 22)
    assert first.key_file is not None
    assert first.key_file.endswith("libvirt/vagrant_ed25519")


def test_a_vm_without_an_address_is_named(tmp_path: Path) -> None:
    text = RECORDED.read_text().replace("HostName 10.77.12.81", "HostName ")
    with pytest.raises(ClusterError, match="n2: `vagrant ssh-config` gives no IPv4 HostName"):
        inventory_from_ssh_config(
            text, load_vagrant_nodes()[:3], tmp_path, None, address_from_ssh_config=True
        )


def _facts(runtime: str) -> ClusterFacts:
    names = ("n1", "n2", "n3")
    addresses = {n: f"10.0.0.{i}" for i, n in enumerate(names)}
    return ClusterFacts(runtime, names, addresses, frozenset())


def test_vms_step_their_own_clock_and_take_bumps_but_not_strobes_or_drifts() -> None:
    assert steps_system_clock("vagrant")
    assert not steps_system_clock("netns")
    bump = parse_clock("nemesis[0]", {"offset_ms": 20000, "target": "all"}, _facts("vagrant"))
    assert bump.mode == "bump"
    for mode, extra in (("strobe", {"offset_ms": 500}), ("drift", {"rate": 2.0})):
        with pytest.raises(ConfigError, match=f"clock mode {mode} is not available on the vagrant"):
            parse_clock("nemesis[0]", {"mode": mode, **extra}, _facts("vagrant"))
        parse_clock("nemesis[0]", {"mode": mode, **extra}, _facts("netns"))  # fine elsewhere


def test_etcd_takes_clock_faults_only_where_the_system_clock_is_stepped() -> None:
    etcd = EtcdBackend.from_options({})
    assert etcd.fault_refusal("clock", "vagrant") is None
    refusal = etcd.fault_refusal("clock", "netns")
    assert refusal is not None
    assert "vDSO" in refusal


class _Node:
    name = "n1"
    address = "10.77.12.52"
    data_dir = "/var/lib/lockbench/n1"


def test_the_step_keeps_its_state_on_the_node_so_a_heal_can_step_back() -> None:
    command = step_command(_Node(), 20000.0)  # type: ignore[arg-type]
    assert command.endswith("/var/lib/lockbench/n1/clock.system 20000.000")
    assert "clock_settime" in command
    assert "systemctl" in command
    heal = heal_command(_Node())  # type: ignore[arg-type]
    assert heal.startswith("if [ -e /var/lib/lockbench/n1/clock.system ]; then")
    assert "clock.system 0.000" in heal


def test_the_step_in_force_is_measured_on_the_node_against_its_boot_clock() -> None:
    lines = [
        "1796619000.5",
        'SYSCLOCK {"offset_ms": 20000.0, "base_ms": 1796600000000.0, "stopped": ["chrony"]}',
        "SYSCLOCK_NOW 1796600020500.0",
    ]
    step = parse_state(lines)
    assert step is not None
    assert step.set_ms == 20000.0
    assert step.measured_ms == pytest.approx(20500.0)
    assert parse_state(lines[:1]) is None  # no step in force


def test_the_accelerator_can_be_forced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ACCEL_ENV, "tcg")
    choice = choose_accel(tmp_path / "no-kernel", tmp_path / "accel.json")
    assert (choice.driver, choice.label) == ("qemu", "TCG (software emulation)")
    assert choice.reason == f"{ACCEL_ENV}=tcg"
    assert not (tmp_path / "accel.json").exists()  # nothing probed, nothing cached


def _vm_inventory(tmp_path: Path, accel: str) -> Path:
    cluster_dir = tmp_path / "vms"
    cluster_dir.mkdir()
    (cluster_dir / "vagrant.json").write_text(json.dumps({"accel": accel}))
    inventory = Inventory(
        runtime="vagrant",
        nodes=(NodeSpec(name="n1", address="10.77.12.40", user="vagrant"),),
        cluster_dir=cluster_dir,
        known_hosts=None,
    )
    save_inventory(inventory, cluster_dir / "inventory.yaml")
    return cluster_dir / "inventory.yaml"


def test_software_emulated_vms_raise_the_tests_timings_to_the_runtimes_floors(
    tmp_path: Path,
) -> None:
    inventory = _vm_inventory(tmp_path, "qemu")
    path = write_test_file(
        tmp_path,
        backend="reference",
        inventory=str(inventory),
        nodes=1,
        backend_options={"tick_ms": 100, "fsync": True},
        op_timeout=5,
        recovery_bound=90,
    )
    config = load_test_config(path)
    assert config.backend_options == {"tick_ms": 250, "fsync": True}
    assert config.op_timeout == 10.0  # raised
    assert config.ttl == 10.0  # the test file says 1 s
    assert config.checker_options["failover"] == 15.0
    assert config.recovery_bound == 90  # already above the floor


def test_kvm_vms_keep_the_tests_timings(tmp_path: Path) -> None:
    inventory = _vm_inventory(tmp_path, "kvm")
    path = write_test_file(
        tmp_path, backend="reference", inventory=str(inventory), nodes=1, op_timeout=5
    )
    config = load_test_config(path)
    assert config.op_timeout == 5
    assert "tick_ms" not in config.backend_options
    assert "failover" not in config.checker_options


def test_the_inventory_keeps_a_slow_nodes_timeout_scale(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    spec = NodeSpec(name="n1", address="10.77.12.40", user="vagrant", timeout_scale=4.0)
    save_inventory(Inventory("vagrant", (spec,), tmp_path, None), path)
    assert load_inventory(path).nodes[0].timeout_scale == 4.0
    path.write_text(path.read_text().replace("timeout_scale: 4.0", "timeout_scale: 0.5"))
    with pytest.raises(ConfigError, match="'timeout_scale' must be a number from 1 to 100"):
        load_inventory(path)
