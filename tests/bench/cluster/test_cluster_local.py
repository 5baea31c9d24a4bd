"""The local runtime: nodes are directories with port offsets; faults it lacks are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cluster import open_cluster, require_capabilities
from bench.cluster.local import local_down, local_up
from lockbench.clock_preload import can_build_library
from lockbench.daemon import daemon_pid, start_daemon
from lockbench.deploy import deploy_project
from lockbench.errors import ClusterError, ConfigError
from lockbench.protocols import Cluster
from tests.bench.cluster.cluster_names import LOCAL_BASE_OFFSET

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


def test_local_nodes_share_loopback_with_distinct_ports_and_dirs(tmp_path: Path) -> None:
    inventory = local_up(tmp_path / "c", base_offset=LOCAL_BASE_OFFSET)
    try:
        assert [n.port_offset for n in inventory.nodes] == [15000, 15010, 15020, 15030, 15040]
        assert {n.address for n in inventory.nodes} == {"127.0.0.1"}
        assert len({n.data_dir for n in inventory.nodes}) == 5
        assert all(Path(n.data_dir).is_dir() for n in inventory.nodes)
        with pytest.raises(ClusterError, match="already holds a cluster"):
            local_up(tmp_path / "c")
    finally:
        local_down(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_local_runtime_refuses_faults_it_cannot_inject(tmp_path: Path) -> None:
    with open_cluster(local_up(tmp_path / "c", base_offset=LOCAL_BASE_OFFSET)) as cluster:
        assert isinstance(cluster, Cluster)
        assert {"kill", "pause", "partition", "netem"} <= cluster.capabilities  # link proxy
        assert ("clock" in cluster.capabilities) == can_build_library()
        require_capabilities(cluster, ["kill", "pause", "partition", "netem"])
    local_down(tmp_path / "c")
    # ports packed too tightly leave no room for the link proxy: no partitions, no netem
    crowded = local_up(tmp_path / "d", base_offset=LOCAL_BASE_OFFSET, offset_step=4)
    refused = pytest.raises(ConfigError, match="local runtime cannot inject netem, partition")
    with open_cluster(crowded) as cluster, refused:
        require_capabilities(cluster, ["kill", "partition", "netem"])
    local_down(tmp_path / "d")


def test_local_down_kills_daemons_and_removes_node_dirs(tmp_path: Path) -> None:
    with open_cluster(local_up(tmp_path / "c", base_offset=LOCAL_BASE_OFFSET)) as cluster:
        node = cluster.node("n2")
        port = 22010 + 900  # inside this suite's 22000-22999 range
        argv = ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        pid = start_daemon(node, "web", argv, faketime=False, ready_port=port)
        assert daemon_pid(node, "web") == pid
    removed = local_down(tmp_path / "c")
    assert f"process {pid} (n2/web)" in removed
    assert (
        not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    )
    assert not (tmp_path / "c").exists()
    assert os.path.exists(tmp_path)


def test_deploy_to_a_node_without_a_usable_python_names_the_node(tmp_path: Path) -> None:
    inventory = local_up(tmp_path / "c", nodes=2, python="/nonexistent/python3")
    try:
        with open_cluster(inventory) as cluster, pytest.raises(ClusterError) as info:
            deploy_project(cluster)
        message = str(info.value)
        assert "n1: /nonexistent/python3 cannot make a venv with pip and PyYAML" in message
        assert "n2: /nonexistent/python3" in message  # every failed node is reported
        assert "install python3, python3-venv, python3-pip and python3-yaml" in message
    finally:
        local_down(tmp_path / "c")
