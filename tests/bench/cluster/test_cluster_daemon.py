"""Daemons on SSH nodes: pidfiles, logs, refusals, signals, clock offsets, log fetching."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.cluster import ClusterHandle
from lockbench.clock_preload import arm_node, build_library, disarm_node, offset_path
from lockbench.daemon import (
    DaemonError,
    daemon_pid,
    fetch_logs,
    kill_daemon,
    signal_daemon,
    start_daemon,
    stop_daemon,
)
from lockbench.protocols import Node
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root

HTTP = ["/usr/bin/python3", "-m", "http.server", "--bind"]
# Prints the (faked) wall clock every 0.2 s; coreutils sleep is relative, so it keeps working.
CLOCK_PRINTER = ["bash", "-c", "while true; do date +%s > clock.txt; sleep 0.2; done"]


def _state(node: object, pid: int) -> str:
    out = node.run(f"sed -n 's/^State:[[:space:]]*//p' /proc/{pid}/status")  # type: ignore[attr-defined]
    return str(out.stdout.strip()[:1])


def test_daemon_lifecycle_pidfile_and_refusals(netns: ClusterHandle) -> None:
    node = netns.node("n1")
    port = free_port()
    argv = [*HTTP, node.address, str(port)]
    pid = start_daemon(node, "web", argv, ready_port=port)
    try:
        assert daemon_pid(node, "web") == pid
        assert node.run(f"cat {node.data_dir}/web.pid").stdout.strip() == str(pid)
        with pytest.raises(DaemonError, match=f"n1: daemon web is already running \\(pid {pid}\\)"):
            start_daemon(node, "web", argv)
        taken = rf"port {port} on 10\.77\.1\.11 is already taken"
        with pytest.raises(DaemonError, match=taken):
            start_daemon(node, "web2", argv, ready_port=port)
        assert daemon_pid(node, "web2") is None
        # served over the bridge to another namespace
        other = netns.node("n2")
        fetch = f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{node.address}:{port}/').status)\""
        assert other.run(fetch).stdout.strip() == "200"
        assert signal_daemon(node, "web", "STOP")
        assert _state(node, pid) == "T"
        assert signal_daemon(node, "web", "CONT")
        assert _state(node, pid) != "T"
        signal_daemon(node, "web", "STOP")
        stop_daemon(node, "web", timeout=2)  # a paused daemon still stops
        assert daemon_pid(node, "web") is None
        assert not signal_daemon(node, "web", "KILL")
    finally:
        stop_daemon(node, "web")


def test_start_fails_clearly_for_missing_program_and_early_exit(netns: ClusterHandle) -> None:
    node = netns.node("n2")
    with pytest.raises(DaemonError, match="n2: daemon ghost: program /opt/none/ghostd not found"):
        start_daemon(node, "ghost", ["/opt/none/ghostd"])
    with pytest.raises(DaemonError, match=r"exited right after start(.|\n)*bad flag"):
        # with a ready port the start waits for the port or the exit: no race with a slow start
        start_daemon(
            node, "quitter", ["bash", "-c", "echo bad flag >&2; exit 2"], ready_port=free_port()
        )
    assert daemon_pid(node, "quitter") is None
    assert node.run(f"ls {node.data_dir}").stdout.count(".pid") == 0


def test_kill_is_immediate_and_start_works_again(netns: ClusterHandle) -> None:
    node = netns.node("n3")
    argv = ["bash", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    first = start_daemon(node, "stubborn", argv)
    assert kill_daemon(node, "stubborn")
    assert daemon_pid(node, "stubborn") is None
    second = start_daemon(node, "stubborn", argv)
    assert second != first
    started = time.monotonic()
    stop_daemon(node, "stubborn", timeout=0.5)  # ignores TERM, so KILL after the timeout
    assert daemon_pid(node, "stubborn") is None
    assert time.monotonic() - started < 5


def _environment(node: Node, pid: int) -> str:
    return node.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout


def test_a_node_not_armed_for_clock_faults_starts_daemons_without_any_preload(
    netns: ClusterHandle,
) -> None:
    node = netns.node("n5")
    disarm_node(node)
    pid = start_daemon(node, "plain", CLOCK_PRINTER)
    try:
        assert "LD_PRELOAD" not in _environment(node, pid)
    finally:
        stop_daemon(node, "plain")


def test_offset_file_moves_the_daemons_wall_clock(netns: ClusterHandle) -> None:
    node = netns.node("n4")
    arm_node(node, build_library())
    pid = start_daemon(node, "clock", CLOCK_PRINTER)
    try:
        assert "LD_PRELOAD=" in _environment(node, pid)
        assert node.run(f"cat {offset_path(node)}").stdout.strip() == "+0"
        node.run(f"echo +3600 > {offset_path(node)}")

        def skew() -> float:
            out = node.run(f"cat {node.data_dir}/clock.txt", check=False).stdout.strip()
            return int(out) - time.time() if out.isdigit() else 0.0

        def ahead() -> float | None:
            seconds = skew()
            return seconds if seconds > 3500 else None

        moved = wait_until(
            ahead,
            timeout=8,
            what="the daemon's clock an hour ahead",
            interval=0.2,
            details=skew,
        )
        assert 3500 < moved < 3700
    finally:
        stop_daemon(node, "clock")
        disarm_node(node)


def test_fetch_logs_copies_every_nodes_logs(netns: ClusterHandle, tmp_path: Path) -> None:
    for node in netns.nodes:
        node.run(f"echo hello from {node.name} > {node.data_dir}/extra.log")
    fetched = fetch_logs(netns, tmp_path / "logs")
    for node in netns.nodes:
        copy = tmp_path / "logs" / node.name / "extra.log"
        assert copy in fetched
        assert copy.read_text() == f"hello from {node.name}\n"
    assert os.path.commonpath(fetched) == str(tmp_path / "logs")
