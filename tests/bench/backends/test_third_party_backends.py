"""etcd, redis and redlock as backends: options, refusals and missing servers, before any start."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.backends.etcd import EtcdBackend, etcd_argv, leader_from_statuses
from bench.backends.etcd_client import lease_ttl_seconds, lock_key, prefix_end
from bench.backends.redis import RedisBackend
from bench.backends.redis_servers import RedisServerOptions, redis_config
from bench.backends.redlock import RedlockBackend
from bench.backends.server_binaries import (
    MissingServerBinary,
    ServerBinary,
    require_server_binaries,
)
from bench.cluster import open_cluster
from bench.cluster.inventory import Inventory, NodeSpec
from bench.cluster.local import local_down, local_up
from bench.runner.components import create_backend
from bench.runner.config import load_test_config
from lockbench.errors import ConfigError
from lockbench.protocols import fault_refusal


def _ssh_inventory(tmp_path: Path) -> Inventory:
    nodes = tuple(
        NodeSpec(name=f"n{i}", address=f"10.77.6.{10 + i}", data_dir=f"/srv/n{i}")
        for i in range(1, 4)
    )
    return Inventory(runtime="ssh", nodes=nodes, cluster_dir=tmp_path, known_hosts=None)


@pytest.mark.parametrize("name", ["etcd", "redis", "redlock"])
def test_registered_by_short_name(name: str) -> None:
    backend = create_backend(name, {})
    assert backend.name == name


def test_etcd_members_are_configured_on_the_command_line(tmp_path: Path) -> None:
    cluster = open_cluster(_ssh_inventory(tmp_path))
    backend = EtcdBackend.from_options({"heartbeat_ms": 50, "election_ms": 500})
    argv = etcd_argv(cluster, cluster.node("n2"), backend.options)
    flags = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "/usr/bin/etcd"
    assert flags["--name"] == "n2"
    assert flags["--listen-client-urls"] == "http://10.77.6.12:2379"
    assert flags["--initial-cluster"] == (
        "n1=http://10.77.6.11:2380,n2=http://10.77.6.12:2380,n3=http://10.77.6.13:2380"
    )
    assert flags["--heartbeat-interval"] == "50"
    assert flags["--election-timeout"] == "500"
    assert flags["--data-dir"] == "/srv/n2/etcd"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tick": 1}, "unknown key"),
        ({"heartbeat_ms": 0}, "heartbeat_ms must be a positive integer"),
        ({"heartbeat_ms": 100, "election_ms": 300}, "at least 5 x heartbeat_ms"),
    ],
)
def test_bad_etcd_options(options: dict[str, int], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        EtcdBackend.from_options(options)


def test_etcd_leader_is_the_member_that_says_it_leads_in_the_highest_term() -> None:
    def status(member: str, leader: str, term: int) -> dict[str, object]:
        return {"header": {"member_id": member}, "leader": leader, "raftTerm": str(term)}

    statuses = [
        status("11", "11", 3),  # a deposed leader that has not heard of term 4 yet
        status("22", "33", 4),
        status("33", "33", 4),
        None,  # unreachable
    ]
    assert leader_from_statuses(["n1", "n2", "n3", "n4"], statuses) == ("n3", 4)
    assert leader_from_statuses(["n1", "n2"], [None, status("22", "11", 2)]) == (None, None)


def test_etcd_lease_ttls_are_whole_seconds_never_shorter() -> None:
    assert [lease_ttl_seconds(t) for t in (0.2, 1, 1.5, 2, 2.01)] == [1, 1, 2, 2, 3]


def test_etcd_lock_keys_follow_etcds_recipe() -> None:
    assert lock_key("lock/1", 0x694D81B5D2E1A10F) == b"lock/1/694d81b5d2e1a10f"
    assert prefix_end(b"lock/1/") == b"lock/10"
    assert prefix_end(b"a\xff") == b"b"


def test_redis_config_is_written_whole(tmp_path: Path) -> None:
    cluster = open_cluster(_ssh_inventory(tmp_path))
    text = redis_config(cluster.node("n1"), RedisServerOptions(appendonly=True, appendfsync="no"))
    lines = text.splitlines()
    assert "bind 10.77.6.11" in lines
    assert "port 6379" in lines
    assert "appendonly yes" in lines
    assert "appendfsync no" in lines
    assert 'save ""' in lines
    assert "dir /srv/n1/redis" in lines


def test_the_redis_backend_runs_one_server_on_the_first_node(tmp_path: Path) -> None:
    cluster = open_cluster(_ssh_inventory(tmp_path))
    backend = RedisBackend.from_options({})
    assert [n.name for n in backend.server_nodes(cluster)] == ["n1"]
    assert backend.leader(cluster) == "n1"
    assert backend.settings.fencing_counter
    assert [n.name for n in RedlockBackend().server_nodes(cluster)] == ["n1", "n2", "n3"]
    assert not RedlockBackend().settings.fencing_counter


def test_clock_faults_are_refused_for_etcd_with_the_reason(tmp_path: Path) -> None:
    name = "etcd"
    backend = create_backend(name, {})
    assert fault_refusal(backend, "clock", "netns") is not None
    assert [fault_refusal(backend, f, "netns") for f in ("kill", "pause", "partition")] == [
        None
    ] * 3
    test_file = tmp_path / "clock.yaml"
    test_file.write_text(
        f"backend: {name}\nruntime: netns\nworkload: mutex\n"
        "nemesis:\n  - fault: clock\n    offset_ms: 5000\n"
    )
    with pytest.raises(
        ConfigError, match=rf"nemesis\[0\]: backend '{name}' cannot take this fault: .*clock"
    ):
        load_test_config(test_file)


@pytest.mark.parametrize("name", ["redis", "redlock"])
def test_redis_servers_take_clock_faults_and_name_their_program(name: str, tmp_path: Path) -> None:
    backend = create_backend(name, {})
    assert fault_refusal(backend, "clock", "netns") is None
    cluster = open_cluster(_ssh_inventory(tmp_path))
    programs = getattr(backend, "server_programs")(cluster.node("n1"))  # noqa: B009
    assert programs == ["/usr/bin/redis-server"]


def test_etcd_on_the_local_runtime_refuses_link_faults() -> None:
    backend = EtcdBackend()
    refusals = {f: fault_refusal(backend, f, "local") for f in ("partition", "netem", "kill")}
    assert refusals["kill"] is None
    assert "same peer URLs" in str(refusals["partition"])
    assert refusals["netem"]


@pytest.mark.process  # runs shell commands on the local nodes
def test_a_missing_server_binary_names_the_debian_package(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    try:
        with open_cluster(local_up(cluster_dir, nodes=2)) as cluster:
            missing = ServerBinary(str(tmp_path / "no-such-server"), "no-such-package")
            with pytest.raises(MissingServerBinary) as caught:
                require_server_binaries(cluster, "example", [missing])
            message = str(caught.value)
            assert "n1: " in message
            assert "n2: " in message
            assert "apt-get install no-such-package" in message
            require_server_binaries(cluster, "example", [ServerBinary("/bin/sh", "dash")])
    finally:
        local_down(cluster_dir)


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for backend in ("etcd", "redis", "redlock", "zookeeper")
        for p in (Path(__file__).resolve().parents[2] / "configs" / backend).glob("*.yaml")
    ),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_the_known_anomaly_test_files_are_valid(path: Path) -> None:
    config = load_test_config(path, {"runtime": "netns"})
    assert config.backend == path.parent.name
    assert config.seed is not None  # the measured line in docs/comparison.md names it
