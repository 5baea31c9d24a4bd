"""The whole runner on the local runtime (no root): kill, pause and clock faults seen from outside.

Three probe servers run under libfaketime on this machine; a schedule kills one, pauses one and
bumps the clock of the third, and the test reads each server over TCP while the faults are on and
after they stop. The records must say exactly what was done.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nemesis_probe_backend import ProbeBackend, read_probe_time

from bench.cluster import ClusterHandle, Inventory, NodeSpec, open_cluster
from bench.cluster.daemon import find_local_libfaketime
from nemesis.schedule import NemesisRunner

pytestmark = pytest.mark.skipif(
    find_local_libfaketime() is None, reason="libfaketime is not installed (package faketime)"
)
# Ports 23790.. are this test's own (the local runtime puts every node on 127.0.0.1).
PORT_OFFSET = 16000
BUMP_MS = 800.0


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[tuple[ClusterHandle, ProbeBackend]]:
    nodes = tuple(
        NodeSpec(
            name=f"n{i}",
            address="127.0.0.1",
            data_dir=str(tmp_path / f"n{i}"),
            port_offset=PORT_OFFSET + i,
        )
        for i in range(1, 4)
    )
    backend = ProbeBackend()
    with open_cluster(Inventory("local", nodes, tmp_path, None)) as cluster:
        try:
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
    specs = [
        {"fault": "kill", "target": ["n1"], "schedule": {"at": [[0.1, 30]]}},
        {"fault": "pause", "target": ["n3"], "schedule": {"at": [[0.1, 30]]}},
        {"fault": "clock", "offset_ms": BUMP_MS, "target": ["n2"], "schedule": {"at": [[0.1, 30]]}},
    ]
    runner = NemesisRunner(specs, cluster, backend, seed=5, record=lambda *r: records.append(r))
    runner.validate()
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        started = {"start-kill", "start-pause", "start-clock"}
        for _ in range(200):
            if started <= {f for t, f, _ in records if t == "info"}:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.2)  # libfaketime re-reads the offset file every 2 s
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
    assert _answers(n1) and _answers(n3) and backend.running(n1)
    threading.Event().wait(2.2)  # the server's libfaketime re-reads the reset offset
    assert abs(read_probe_time(n2)[0]) < 200

    infos = {f: v for t, f, v in records if t == "info"}
    assert infos["start-kill"] == {"nemesis": 0, "nodes": ["n1"], "signal": "KILL"}
    assert infos["stop-kill"] == {"nemesis": 0, "nodes": ["n1"], "action": "restart"}
    assert infos["start-pause"]["signal"] == "STOP" and infos["stop-pause"]["signal"] == "CONT"
    assert infos["start-clock"]["offsets_ms"] == {"n2": BUMP_MS}
    clock_readings = [v for t, f, v in records if f == "clock"]
    assert any(abs(r["offsets_ms"]["n2"] - BUMP_MS) < 200 for r in clock_readings)
    assert abs(clock_readings[-1]["offsets_ms"]["n2"]) < 200
    for fault in ("start-kill", "stop-kill", "start-pause", "stop-pause"):
        kinds = [t for t, f, _ in records if f == fault]
        assert kinds == ["invoke", "info"], (fault, kinds)


def test_probe_port_is_free_for_this_test() -> None:
    """Guards the fixture's assumption; a taken port would make start_daemon refuse clearly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 7790 + PORT_OFFSET + 9))
