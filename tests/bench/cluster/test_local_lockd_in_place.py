"""lockd on the local runtime: run from this interpreter, tracked by one pidfile, gone after down.

No root and nothing installed: the nodes are directories, lockd is ``sys.executable -m
reference_impl.server.main``. Ports: lockd's 7000/7001/7080 plus offsets 17100, 17110, 17120
(24100-24200, the integration suite's range); the link proxy sits right after each peer port.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backends.reference import (
    DAEMON,
    ReferenceBackend,
    ReferenceOptions,
    fetch_status,
    leader_from_statuses,
)
from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.local import local_down, local_up
from bench.runner.observer import observe_leader
from bench.runner.process import RunStats
from lockbench.daemon import (
    DaemonError,
    daemon_pid,
    pidfile_path,
    start_daemon,
    stop_daemon,
)
from lockbench.history import read_history
from lockbench.history_writer import HistoryWriter
from tests.support.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

BASE_OFFSET = 17100
LEADER_TIMEOUT_S = 30.0
RESTART_CYCLES = 8


def processes_mentioning(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            zombie = "\nState:\tZ" in (entry / "status").read_text()
        except OSError:
            continue
        if marker in cmdline and not zombie:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


@pytest.fixture(scope="module")
def local_lockd(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClusterHandle, ReferenceBackend]]:
    cluster_dir = tmp_path_factory.mktemp("inplace") / "cluster"
    cluster = open_cluster(local_up(cluster_dir, nodes=3, base_offset=BASE_OFFSET))
    backend = ReferenceBackend(ReferenceOptions(tick_ms=100))
    try:
        backend.deploy(cluster)
        for node in cluster.nodes:
            backend.start(node)
        yield cluster, backend
    finally:
        local_down(cluster_dir)


def wait_for_leader(backend: ReferenceBackend, cluster: ClusterHandle) -> tuple[str, int | None]:
    def known_leader() -> tuple[str, int | None] | None:
        leader, term = backend.leader_status(cluster)
        return (leader, term) if leader is not None else None

    return wait_until(
        known_leader,
        timeout=LEADER_TIMEOUT_S,
        what="a leader",
        interval=0.2,
        details=lambda: [fetch_status(n) for n in cluster.nodes],
    )


def test_local_nodes_run_lockd_from_this_interpreter_without_a_deployed_venv(
    local_lockd: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    cluster, backend = local_lockd
    for node in cluster.nodes:
        argv = backend.lockd_argv(node)
        assert argv[:3] == [sys.executable, "-m", "reference_impl.server.main"]
        assert "--pidfile" not in argv  # the pidfile is lockbench.daemon's alone
        pid = daemon_pid(node, DAEMON)
        assert pid is not None, f"{node.name}: lockd not running"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == sys.executable
        assert not Path(node.data_dir, "venv").exists()  # nothing was installed


def test_leader_status_gives_the_term_and_the_observer_records_it(
    local_lockd: tuple[ClusterHandle, ReferenceBackend], tmp_path: Path
) -> None:
    cluster, backend = local_lockd
    leader, term = wait_for_leader(backend, cluster)
    assert isinstance(term, int)
    assert term >= 1
    assert backend.last_term == term
    status = fetch_status(cluster.node(leader))
    assert status is not None
    assert status["role"] == "leader"
    assert status["term"] >= term

    async def observe_briefly() -> None:
        stop = asyncio.Event()
        writer = HistoryWriter(tmp_path / "history.jsonl")
        task = asyncio.create_task(
            observe_leader(backend, cluster, writer, RunStats(), stop, interval=0.2, timeout=2.0)
        )
        await wait_until_async(lambda: writer.lines > 0, timeout=10, what="a leader record")
        stop.set()
        await task
        writer.close()

    asyncio.run(observe_briefly())
    records = [op for op in read_history(tmp_path / "history.jsonl") if op.f == "leader"]
    assert records, "the observer recorded no leader"
    assert isinstance(records[0].value, dict)
    assert isinstance(records[0].value["term"], int)
    assert records[0].value["term"] >= term


def test_leader_of_the_highest_term_wins_and_no_leader_has_no_term() -> None:
    statuses = [
        {"role": "leader", "term": 4},
        {"role": "follower", "term": 5},
        {"role": "leader", "term": 5},
    ]
    assert leader_from_statuses(["n1", "n2", "n3"], statuses) == ("n3", 5)
    assert leader_from_statuses(["n1", "n2"], [None, {"role": "candidate", "term": 9}]) == (
        None,
        None,
    )


def test_concurrent_starts_run_one_lockd_and_its_pidfile_names_it(
    local_lockd: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    cluster, backend = local_lockd
    node = cluster.node("n3")
    stop_daemon(node, DAEMON)
    outcomes: list[BaseException | None] = []

    def start() -> None:
        try:
            backend.start(node)
            outcomes.append(None)
        except BaseException as exc:  # collected and asserted on below
            outcomes.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes.count(None) == 1, outcomes
    refused = next(o for o in outcomes if o is not None)
    assert isinstance(refused, DaemonError)
    assert "already running" in str(refused)
    running = processes_mentioning(f"{node.data_dir}/lockd.yaml")
    assert len(running) == 1, running
    recorded = Path(pidfile_path(node, DAEMON)).read_text().strip()
    assert running[0].split(":")[0] == recorded


def test_kill_and_restart_cycles_never_lose_track_of_lockd(
    local_lockd: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    # lockd used to rewrite (truncate, then write) the pidfile the start script was polling:
    # a read in between looked like a dead daemon, the pidfile was deleted, lockd ran on
    # untracked and survived ``cluster down``. Restarts, as the kill nemesis does them:
    cluster, backend = local_lockd
    node = cluster.node("n2")
    for _ in range(RESTART_CYCLES):
        backend.kill(node)
        backend.start(node)
        running = processes_mentioning(f"{node.data_dir}/lockd.yaml")
        assert len(running) == 1, running
        assert running[0].split(":")[0] == Path(pidfile_path(node, DAEMON)).read_text().strip()


def test_a_start_is_judged_by_the_launched_process_not_a_reread_pidfile(tmp_path: Path) -> None:
    # A daemon that empties the pidfile for a moment (as lockd's own pidfile write used to)
    # must still count as started, and stay tracked for ``down``.
    cluster_dir = tmp_path / "c"
    pid = None
    try:
        with open_cluster(local_up(cluster_dir, nodes=1, base_offset=BASE_OFFSET)) as cluster:
            node = cluster.node("n1")
            pidfile = pidfile_path(node, "rewriter")
            script = f": > {pidfile}; sleep 1; echo $$ > {pidfile}; exec sleep 60 # {cluster_dir}"
            pid = start_daemon(node, "rewriter", ["sh", "-c", script], faketime=False)
            assert daemon_pid(node, "rewriter") in (None, pid)  # the pidfile may be empty now
            wait_until(
                lambda: daemon_pid(node, "rewriter") == pid,
                timeout=10,
                what="the rewritten pidfile",
            )
    finally:
        removed = local_down(cluster_dir)
    assert f"process {pid} (n1/rewriter)" in removed
    assert processes_mentioning(str(cluster_dir)) == []


def test_local_down_leaves_no_lockd_and_no_proxy(
    local_lockd: tuple[ClusterHandle, ReferenceBackend],
) -> None:
    cluster, _ = local_lockd
    cluster_dir = Path(cluster.nodes[0].data_dir).parents[1]
    assert processes_mentioning(str(cluster_dir))  # lockd and the link proxy run now
    local_down(cluster_dir)
    assert processes_mentioning(str(cluster_dir)) == []
    assert not cluster_dir.exists()
