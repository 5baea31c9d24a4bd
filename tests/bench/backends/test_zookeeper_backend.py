"""The zookeeper backend: its configuration, its refusals, a real ensemble on a netns cluster."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.backends.zookeeper import (
    DEBIAN_PACKAGE,
    JVM_FLAGS,
    LOG4J_PROPERTIES,
    LOGGING_JARS,
    MAIN_CLASS,
    SERVER_JAR,
    ZooKeeperBackend,
    ZooKeeperOptions,
    zoo_cfg,
)
from bench.backends.zookeeper_client import (
    ZooKeeperLockClient,
    lock_path,
    open_zookeeper_client,
    sequence_of,
    session_timeout_for,
)
from bench.runner.cluster_setup import InProcessCluster
from bench.runner.components import create_backend
from bench.runner.config import load_test_config
from bench.runner.test_run import RunOptions, run_test
from lockbench.errors import ClusterError, ConfigError
from lockbench.history import pair_calls, read_history
from lockbench.protocols import DefiniteFailure, Indeterminate, state_dir_of

HAVE_ZOOKEEPER = Path(SERVER_JAR).is_file()


def test_options_are_checked_and_name_the_key() -> None:
    assert isinstance(create_backend("zookeeper", {}), ZooKeeperBackend)
    with pytest.raises(ConfigError, match=r"unknown key.*tick"):
        ZooKeeperOptions.from_mapping({"tick": 5})
    with pytest.raises(ConfigError, match="'connect_to' must be one of all, own"):
        ZooKeeperOptions.from_mapping({"connect_to": "some"})
    with pytest.raises(ConfigError, match="'tick_ms' must be a positive integer"):
        ZooKeeperOptions.from_mapping({"tick_ms": 0})


def test_the_config_lists_the_whole_ensemble_and_the_node_s_own_address(tmp_path: Path) -> None:
    cluster = InProcessCluster(tmp_path)
    (node,) = cluster.nodes
    text = zoo_cfg(cluster, node, ZooKeeperOptions(tick_ms=400))
    assert "tickTime=400" in text
    assert f"clientPortAddress={node.address}" in text
    assert f"server.1={node.address}:2888:3888" in text
    assert "4lw.commands.whitelist=srvr" in text
    assert "forceSync=yes" in text
    assert "forceSync=no" in zoo_cfg(cluster, node, ZooKeeperOptions(force_sync=False))


def test_the_data_dir_is_the_state_the_power_loss_fault_reaches(tmp_path: Path) -> None:
    """Snapshots and the transaction log share dataDir (no dataLogDir), the declared state_dir,
    and the server's program is the JVM, a dynamic ELF the clock library reaches."""
    cluster = InProcessCluster(tmp_path)
    (node,) = cluster.nodes
    backend = ZooKeeperBackend()
    assert state_dir_of(backend) is not None
    text = zoo_cfg(cluster, node, backend.options)
    assert f"dataDir={backend.state_dir(node)}" in text
    assert "dataLogDir" not in text
    assert backend.state_dir(node).startswith(node.data_dir + "/")
    assert backend.server_programs(node) == ["java"]
    with pytest.raises(ConfigError, match="'force_sync' must be true or false"):
        ZooKeeperOptions.from_mapping({"force_sync": "no"})


def test_lock_nodes_carry_their_sequence_number_as_the_token() -> None:
    assert sequence_of("f3a9c2__lock__0000000042") == 42
    with pytest.raises(ValueError, match="not a kazoo lock node"):
        sequence_of("something-else")
    assert lock_path("lock/0") == "/lockbench/locks/lock%2F0"


def test_the_session_timeout_asked_for_is_one_the_server_grants() -> None:
    assert session_timeout_for(3.0, 500) == 3.0
    assert session_timeout_for(0.2, 500) == 1.0  # at least 2 ticks
    assert session_timeout_for(60.0, 500) == 10.0  # at most 20 ticks


@pytest.mark.process
def test_a_node_without_the_server_fails_before_anything_starts_naming_the_package(
    tmp_path: Path,
) -> None:
    cluster = InProcessCluster(tmp_path)
    backend = ZooKeeperBackend(ZooKeeperOptions(server_jar=str(tmp_path / "no" / "zookeeper.jar")))
    with pytest.raises(ClusterError, match=f"install the Debian package '{DEBIAN_PACKAGE}'"):
        backend.deploy(cluster)
    assert not (tmp_path / "zookeeper" / "zoo.cfg").exists()


def test_the_local_runtime_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "zk.yaml"
    path.write_text(yaml.safe_dump({"backend": "zookeeper", "runtime": "local"}))
    with pytest.raises(ConfigError, match="runs only on runtime"):
        load_test_config(path)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(900)  # five JVMs may take minutes to form an ensemble on a loaded machine
@pytest.mark.skipif(
    not HAVE_ZOOKEEPER, reason=f"no {SERVER_JAR}: install the Debian package '{DEBIAN_PACKAGE}'"
)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_a_real_ensemble_on_a_netns_cluster_grants_locks_with_rising_tokens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "zookeeper.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "lbz-zookeeper",
                "runtime": "netns",
                "netns_prefix": "lbz",
                "subnet": "10.77.9.0/24",
                "cluster_dir": str(tmp_path / "cluster"),
                "backend": "zookeeper",
                "workload": "mutex",
                "workload_options": {"locks": 2, "hold": 0.02, "think": 0.02, "acquire_timeout": 3},
                "nemesis": [
                    {"fault": "partition", "shape": "isolate-one", "schedule": {"at": [[4, 8]]}}
                ],
                "time_limit": 12,
                "concurrency": 5,
                "op_timeout": 5,
                "ttl": 3,
                "recovery_bound": 300,
                "seed": 4,
            }
        )
    )
    outcome = run_test(load_test_config(path), RunOptions(store=tmp_path / "store"))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert outcome.exit_code == 0, results
    calls = pair_calls(read_history(outcome.run_dir / "history.jsonl"))
    grants = [c for c in calls if c.invoke.f == "acquire" and c.outcome == "ok"]
    assert len(grants) >= 5, "the ensemble granted (almost) nothing"
    by_lock: dict[str, list[int]] = defaultdict(list)
    for call in sorted(grants, key=lambda c: c.completion.time if c.completion else 0):
        assert call.completion is not None
        by_lock[call.invoke.key or ""].append(int(call.completion.value))
    for tokens in by_lock.values():
        assert tokens == sorted(tokens), tokens
        assert len(set(tokens)) == len(tokens), tokens
    logs = list((outcome.run_dir / "nodes").glob("*/zookeeper.log"))
    assert len(logs) == 5
    assert any("LEADING" in log.read_text(errors="replace") for log in logs)


@pytest.fixture
def standalone_server(tmp_path: Path) -> Iterator[str]:
    """One real ZooKeeper server on 127.0.0.1 (standalone: no ensemble, no root needed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "data").mkdir()
    (tmp_path / "zoo.cfg").write_text(
        f"tickTime=1000\ndataDir={tmp_path / 'data'}\nclientPort={port}\n"
        "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
    )
    (tmp_path / "log4j.properties").write_text(LOG4J_PROPERTIES)
    classpath = ":".join([str(tmp_path), SERVER_JAR, *LOGGING_JARS])
    argv = [*JVM_FLAGS, f"-Dlog4j.configuration=file:{tmp_path}/log4j.properties"]
    with (tmp_path / "zookeeper.log").open("w") as log:
        server = subprocess.Popen(
            ["java", *argv, "-cp", classpath, MAIN_CLASS, str(tmp_path / "zoo.cfg")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _connect(host: str, process: int) -> ZooKeeperLockClient:
    for _ in range(120):  # the JVM takes a few seconds to serve
        try:
            return await open_zookeeper_client([host], ttl=2, process=process, tick_ms=1000)
        except Indeterminate:
            await asyncio.sleep(0.5)
    raise AssertionError("the standalone server never served")


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not HAVE_ZOOKEEPER, reason=f"no {SERVER_JAR}: install the Debian package '{DEBIAN_PACKAGE}'"
)
def test_a_stalled_holder_loses_its_lock_to_a_higher_token_and_learns_it(
    standalone_server: str,
) -> None:
    async def scenario() -> None:
        holder = await _connect(standalone_server, 0)
        waiter = await _connect(standalone_server, 1)
        first = await holder.acquire("lock/0", timeout=2)
        with pytest.raises(DefiniteFailure, match="not granted"):
            await waiter.acquire("lock/0", timeout=0.5)  # queued, timed out, left the queue
        assert (await waiter.owner("lock/0")).holders == (holder.session,)
        waiting = asyncio.create_task(waiter.acquire("lock/0", timeout=15))
        # held for twice the 2 s session: the answered heartbeat syncs keep the lease current
        await asyncio.sleep(4.0)
        assert holder.lease_deadline() is None
        assert not waiting.done()
        await holder.stall(3.5)  # a 2 s session: ZooKeeper expires it, the waiter is granted
        second = await waiting
        assert first.token is not None
        assert second.token is not None
        assert second.token > first.token
        assert holder.lease_deadline() is not None  # it can tell its lease lapsed
        with pytest.raises(Indeterminate, match="expired"):
            await holder.release("lock/0")  # released by the service at an unknown time
        await waiter.release("lock/0")
        await holder.close()
        await waiter.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
