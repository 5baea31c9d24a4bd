"""The whole runner on the local runtime (no root): kill, pause and clock faults seen from outside.

Three probe servers run under the wall-clock library on this machine; a schedule kills one,
pauses one and bumps the clock of the third, and the test reads each server over TCP while the
faults are on and after they stop. The records must say exactly what was done.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import ClusterHandle, Inventory, NodeSpec, open_cluster
from lockbench.clock_preload import REFRESH_MS, arm_clock, can_build_library
from lockbench.daemon import daemon_pid, start_daemon
from nemesis.schedule import NemesisRunner
from tests.nemesis.nemesis_probe_backend import (
    DAEMON,
    PROBE_SERVER,
    ProbeBackend,
    probe_port,
    read_probe_ticks,
    read_probe_time,
)

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not can_build_library(), reason="no C compiler (gcc) to build the wall-clock library"
    ),
]
# A fault reaches a running server within the library's re-read interval; a margin on top.
REREAD_S = REFRESH_MS / 1000.0 + 0.2
# Ports 23000..23830 are this test's own (the local runtime puts every node on 127.0.0.1): probe
# servers at 7790 + offset, the link proxy right after 7001 + offset (bench.cluster.link_faults).
PORT_OFFSET = 16000
BUMP_MS = 800.0


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[tuple[ClusterHandle, ProbeBackend]]:
    nodes = tuple(
        NodeSpec(
            name=f"n{i}",
            address="127.0.0.1",
            data_dir=str(tmp_path / f"n{i}"),
            port_offset=PORT_OFFSET + 10 * i,
        )
        for i in range(1, 4)
    )
    backend = ProbeBackend()
    with open_cluster(Inventory("local", nodes, tmp_path, None)) as cluster:
        try:
            arm_clock(cluster)
            for node in cluster.nodes:
                backend.start(node)
            yield cluster, backend
        finally:
            for node in cluster.nodes:
                backend.resume(node)
                backend.stop(node)


def _answers(node: Any) -> bool:
    try:
        read_probe_time(node, timeout=0.5)
    except OSError:
        return False
    return True


def test_kill_pause_and_clock_bump_are_seen_from_outside_and_undone(
    local_cluster: tuple[ClusterHandle, ProbeBackend],
) -> None:
    cluster, backend = local_cluster
    n1, n2, n3 = (cluster.node(name) for name in ("n1", "n2", "n3"))
    records: list[tuple[str, str, Any]] = []
    specs: list[dict[str, Any]] = [
        {"fault": "kill", "target": ["n1"], "schedule": {"at": [[0.1, 30]]}},
        {"fault": "pause", "target": ["n3"], "schedule": {"at": [[0.1, 30]]}},
        {"fault": "clock", "offset_ms": BUMP_MS, "target": ["n2"], "schedule": {"at": [[0.1, 30]]}},
    ]
    runner = NemesisRunner(specs, cluster, backend, seed=5, record=lambda *r: records.append(r))
    runner.validate()
    seen: dict[str, Any] = {}
    sleeper = daemon_pid(n2, DAEMON), read_probe_ticks(n2)  # its timer thread calls time.sleep

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        started = {"start-kill", "start-pause", "start-clock"}
        for _ in range(200):
            if started <= {f for t, f, _ in records if t == "info"}:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(REREAD_S)
        seen["n1"] = await asyncio.to_thread(_answers, n1)
        seen["n3"] = await asyncio.to_thread(_answers, n3)
        seen["n2"] = await asyncio.to_thread(read_probe_time, n2)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        errors = runner.heal_all()
    assert errors == []
    assert seen["n1"] is False, "killed server still answers"
    assert seen["n3"] is False, "paused server still answers"
    offset_ms, round_trip_ms = seen["n2"]
    assert abs(offset_ms - BUMP_MS) < 200 + round_trip_ms

    # Stopping the schedule undid everything: restarted, resumed, clock back.
    assert _answers(n1)
    assert _answers(n3)
    assert backend.running(n1)
    threading.Event().wait(REREAD_S)  # the server's library re-reads the reset offset
    assert abs(read_probe_time(n2)[0]) < 200
    # The Python server whose timer thread sleeps survived its clock's bump and reset, ticking.
    assert daemon_pid(n2, DAEMON) == sleeper[0]
    assert read_probe_ticks(n2) > sleeper[1]

    infos = {f: v for t, f, v in records if t == "info"}
    assert infos["start-kill"] == {"nemesis": 0, "nodes": ["n1"], "signal": "KILL"}
    invokes = {f: v for t, f, v in records if t == "invoke"}
    # the start says how many of how many nodes (the liveness checker's quorum outages)
    assert invokes["start-kill"] == {"nemesis": 0, "nodes": ["n1"], "cluster_size": 3}
    assert infos["stop-kill"] == {"nemesis": 0, "nodes": ["n1"], "action": "restart"}
    assert infos["start-pause"]["signal"] == "STOP"
    assert infos["stop-pause"]["signal"] == "CONT"
    assert infos["start-clock"]["offsets_ms"] == {"n2": BUMP_MS}
    clock_readings = [v for t, f, v in records if f == "clock"]
    assert any(abs(r["offsets_ms"]["n2"] - BUMP_MS) < 200 for r in clock_readings)
    assert abs(clock_readings[-1]["offsets_ms"]["n2"]) < 200
    # Reach was checked on the server's own clock after the bump: n2 showed the offset.
    bumped = next(r for r in clock_readings if abs(r["offsets_ms"]["n2"] - BUMP_MS) < 200)
    assert bumped["reach"]["n2"]["by"] == "server"
    assert bumped["reach"]["n2"]["reached"] is True
    assert abs(bumped["reach"]["n2"]["seen_ms"] - BUMP_MS) < 100
    assert all("not_reached" not in r for r in clock_readings), clock_readings
    for fault in ("start-kill", "stop-kill", "start-pause", "stop-pause"):
        kinds = [t for t, f, _ in records if f == fault]
        assert kinds == ["invoke", "info"], (fault, kinds)


def test_probe_port_is_free_for_this_test() -> None:
    """Guards the fixture's assumption; a taken port would make start_daemon refuse clearly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 7790 + PORT_OFFSET + 5))


def test_a_drifting_clock_is_sampled_while_it_drifts_and_reset_at_the_end(
    local_cluster: tuple[ClusterHandle, ProbeBackend],
) -> None:
    cluster, backend = local_cluster
    records: list[tuple[str, str, Any]] = []
    spec = {
        "fault": "clock",
        "mode": "drift",
        "rate": 1.5,
        "period_ms": 3000,
        "target": ["n1"],
        "schedule": {"at": [[0, 60]]},
    }
    runner = NemesisRunner([spec], cluster, backend, seed=1, record=lambda *r: records.append(r))

    # three periods: a loaded machine may delay a 3-s sample past the second period
    _run_schedule(runner, lambda: asyncio.sleep(10.0))
    start = next(v for t, f, v in records if t == "info" and f == "start-clock")
    assert start["rate"] == 1.5
    assert start["period_ms"] == 3000
    readings = [v["offsets_ms"]["n1"] for t, f, v in records if f == "clock"]
    # Baseline, after the start, periodic samples (the driver writes 0, then +1.5 s after 3 s),
    # after the stop and after the heal.
    assert len(readings) >= 5, readings
    assert max(readings) >= 1400, readings
    assert abs(readings[0]) < 50, readings
    assert abs(readings[-1]) < 50, readings


def _run_schedule(runner: NemesisRunner, until: Callable[[], Awaitable[object]]) -> None:
    """Run the schedule until ``until()`` returns, stop it, and heal: nothing may be left."""

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await until()
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        assert runner.heal_all() == []


def _through_proxy(cluster: ClusterHandle, src: str, dst: str) -> float | None:
    """ms until ``dst``'s probe answers over the proxied link ``src -> dst``, or None."""
    assert cluster.link_faults is not None
    port = cluster.link_faults.proxy_port(src, dst)
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            if not sock.makefile().readline():
                return None
    except OSError:
        return None
    return (time.monotonic() - start) * 1000.0


def test_partition_and_netem_go_through_the_local_link_proxy(
    local_cluster: tuple[ClusterHandle, ProbeBackend],
) -> None:
    cluster, backend = local_cluster
    links = cluster.link_faults
    assert links is not None
    assert {"partition", "netem"} <= cluster.capabilities
    links.start_proxy({node.name: probe_port(node) for node in cluster.nodes})
    records: list[tuple[str, str, Any]] = []
    specs: list[dict[str, Any]] = [
        {
            "fault": "partition",
            "shape": "isolate-one",
            "target": "n1",
            "schedule": {"at": [[0, 60]]},
        },
        {"fault": "netem", "delay_ms": 200, "links": [["n2", "n3"]], "schedule": {"at": [[0, 60]]}},
    ]
    runner = NemesisRunner(specs, cluster, backend, seed=2, record=lambda *r: records.append(r))
    seen: dict[str, float | None] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        for _ in range(200):
            if {"start-partition", "start-netem"} <= {f for t, f, _ in records if t == "info"}:
                break
            await asyncio.sleep(0.05)
        for src, dst in (("n1", "n2"), ("n3", "n1"), ("n2", "n3"), ("n3", "n2")):
            seen[f"{src}->{dst}"] = await asyncio.to_thread(_through_proxy, cluster, src, dst)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    try:
        assert _through_proxy(cluster, "n1", "n2") is not None
        asyncio.run(scenario())
        assert runner.heal_all() == []
        assert seen["n1->n2"] is None, seen
        assert seen["n3->n1"] is None, seen
        for link in ("n2->n3", "n3->n2"):
            delayed = seen[link]
            assert delayed is not None, seen
            assert delayed >= 190, seen
        healthy = [_through_proxy(cluster, a, b) for a, b in (("n1", "n2"), ("n2", "n3"))]
        assert all(ms is not None and ms < 100 for ms in healthy), healthy
    finally:
        runner.heal_all()
        links.stop_proxy()
    infos = {f: v for t, f, v in records if t == "info"}
    assert infos["start-partition"]["grudge"]["n1"] == ["n2", "n3"]
    assert infos["start-netem"]["via"] == "link proxy"


def test_a_server_started_without_the_clock_library_is_recorded_as_not_reached(
    local_cluster: tuple[ClusterHandle, ProbeBackend],
) -> None:
    """A server the fault cannot move (here: one started plain) must never count as faulted."""
    cluster, backend = local_cluster
    n3 = cluster.node("n3")
    backend.stop(n3)
    argv = [sys.executable, str(PROBE_SERVER), n3.address, str(probe_port(n3))]
    start_daemon(n3, DAEMON, argv, faketime=False, ready_port=probe_port(n3))
    records: list[tuple[str, str, Any]] = []
    specs = [
        {"fault": "clock", "offset_ms": BUMP_MS, "target": "all", "schedule": {"at": [[0, 30]]}}
    ]
    runner = NemesisRunner(specs, cluster, backend, seed=5, record=lambda *r: records.append(r))

    async def clock_started() -> None:
        for _ in range(200):
            if any(f == "start-clock" and t == "info" for t, f, _ in records):
                return
            await asyncio.sleep(0.05)

    _run_schedule(runner, clock_started)
    after_start = [v for t, f, v in records if f == "clock" and "not_reached" in v]
    assert after_start, records
    reach = after_start[0]["reach"]
    assert after_start[0]["not_reached"] == ["n3"]
    assert reach["n3"]["reached"] is False
    assert reach["n3"]["by"] == "server"
    assert abs(reach["n3"]["seen_ms"]) < 100
    assert abs(reach["n3"]["expected_ms"] - BUMP_MS) < 50
    assert reach["n1"]["reached"] is True
    assert reach["n2"]["reached"] is True
