"""Each fault observed from the outside on a real netns cluster (sshd per node), and each heal.

Probe servers (nemesis_probe_server.py, under the wall-clock library) run on every node; the
tests connect between namespaces for partitions and netem, from the control node for clocks.
Namespaces use the prefix ``lbn`` and the subnet 10.77.2.0/24 (this suite's own).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import ClusterHandle
from lockbench.clock_preload import REFRESH_MS, arm_clock, offset_path
from lockbench.daemon import daemon_pid
from lockbench.protocols import Node
from nemesis import shapes
from nemesis.clock import ClockNemesis, measure_clock_offsets
from nemesis.fault import FaultTarget
from nemesis.heal import heal_cluster
from nemesis.netem import NetemNemesis
from nemesis.partition import PartitionNemesis
from nemesis.remote import NodeLocks, on_nodes
from nemesis.spec import ClockOptions, NetemOptions, TargetSpec
from tests.nemesis.nemesis_probe_backend import ProbeBackend, probe_port, read_probe_time
from tests.support.netns_cluster import netns_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and iptables"),
]

HERE = Path(__file__).parent
HARNESS_MODULE = "tests.nemesis.nemesis_sigint_harness"
NAMES = ("n1", "n2", "n3", "n4", "n5")
# The wall-clock library re-reads the offset file every 20 ms; a margin on top.
REREAD_S = REFRESH_MS / 1000.0 + 0.2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    backend = ProbeBackend()
    with netns_cluster(
        tmp_path_factory.mktemp("nemesis"), prefix="lbn", subnet="10.77.2.0/24"
    ) as handle:
        try:
            arm_clock(handle)
            on_nodes(list(handle.nodes), backend.start)
            yield handle
        finally:
            heal_cluster(handle, backend)
            on_nodes(list(handle.nodes), backend.stop)


@pytest.fixture
def healed(cluster: ClusterHandle) -> Iterator[ClusterHandle]:
    """Every test starts and ends on a healed cluster with all probes up."""
    backend = ProbeBackend()
    try:
        yield cluster
    finally:
        assert heal_cluster(cluster, backend) == []
        on_nodes(list(cluster.nodes), backend.ensure_started)


# Runs on a node: connect to each peer's probe port REPEAT times (peers in parallel); prints
# {peer: median connect ms, or the error's name}.
_CONNECT_ALL = """
import json, socket, sys, threading, time
timeout, repeat = float(sys.argv[1]), int(sys.argv[2])
out = {}
def go(peer, port):
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        try:
            socket.create_connection((peer, port), timeout=timeout).close()
        except OSError as exc:
            out[peer] = type(exc).__name__
            return
        times.append((time.monotonic() - start) * 1000.0)
    out[peer] = round(sorted(times)[len(times) // 2], 3)
threads = [threading.Thread(target=go, args=(p, int(port))) for p, port in
           (a.split(":") for a in sys.argv[3:])]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(out))
"""


def _connects(
    cluster: ClusterHandle, source: Node, timeout: float = 0.7, repeat: int = 1
) -> dict[str, object]:
    """What ``source`` gets connecting to every other node (median ms, or the error's name)."""
    peers = [n for n in cluster.nodes if n.name != source.name]
    args = " ".join(f"{p.address}:{probe_port(p)}" for p in peers)
    script = shlex.quote(_CONNECT_ALL)
    command = f"{shlex.quote(sys.executable)} -c {script} {timeout} {repeat} {args}"
    answers = json.loads(source.run(command).stdout)
    by_address = {p.address: p.name for p in peers}
    return {by_address[address]: value for address, value in answers.items()}


def _reachability(cluster: ClusterHandle) -> dict[tuple[str, str], bool]:
    results: dict[tuple[str, str], bool] = {}
    lock = threading.Lock()

    def probe(node: Node) -> None:
        answers = _connects(cluster, node)
        with lock:
            for peer, value in answers.items():
                results[(node.name, peer)] = isinstance(value, float)

    threads = [threading.Thread(target=probe, args=(n,)) for n in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("shape", ["majorities-ring"])
def test_partitioned_nodes_cannot_reach_their_peers_until_healed(
    healed: ClusterHandle, shape: str
) -> None:
    cluster = healed
    rng = random.Random(shape)
    grudge = {
        "majority-minority": lambda: shapes.majority_minority(NAMES, rng, 2),
        "majorities-ring": lambda: shapes.majorities_ring(NAMES, rng),
    }[shape]()
    nemesis = PartitionNemesis(cluster, "lockbench-test", NodeLocks())
    action = nemesis.invoke("start-partition", FaultTarget(grudge=grudge))
    assert set(action.description["rules"]) == {n for n, g in grudge.items() if g}
    seen = _reachability(cluster)
    expected = {(a, b): shapes.reachable(grudge, a, b) for a, b in seen}
    assert seen == expected
    nemesis.invoke("stop-partition", None)
    assert all(_reachability(cluster).values())
    # The chain stays (empty) after a stop; a heal removes it and the jump from INPUT, and
    # leaves the user's own rules alone.
    n1 = cluster.node("n1")
    user_rule = "INPUT -s 10.77.2.250/32 -m comment --comment user-rule -j DROP"
    n1.run(f"iptables -w -A {user_rule}")
    try:
        nemesis.invoke("start-partition", FaultTarget(grudge=grudge))
        assert heal_cluster(cluster) == []
        assert all(_reachability(cluster).values())
        for node in cluster.nodes:
            assert "LOCKBENCH" not in node.run("iptables -w -S").stdout
        assert f"-A {user_rule}" in n1.run("iptables -w -S INPUT").stdout
    finally:
        n1.run(f"iptables -w -D {user_rule}", check=False)


def _probe_reads(node: Node, offset_ms: float) -> tuple[float, float]:
    """The node's probe time offset and round trip, once it reads ``offset_ms`` (within 100 ms
    and the round trip): the clock library rereads its offset file every REFRESH_MS."""

    def reading() -> tuple[float, float] | None:
        probe_offset, round_trip = read_probe_time(node)
        return (
            (probe_offset, round_trip) if abs(probe_offset - offset_ms) < 100 + round_trip else None
        )

    return wait_until(
        reading,
        timeout=REREAD_S + 5,
        what=f"{node.name}'s probe reading an offset of {offset_ms} ms",
        interval=0.1,
        details=lambda: read_probe_time(node),
    )


def test_a_bumped_node_reports_the_bumped_time_and_reset_restores_it(
    healed: ClusterHandle,
) -> None:
    cluster = healed
    offsets: dict[str, float] = {}
    options = ClockOptions(mode="bump", target=TargetSpec("nodes", None, ("n2",)), offset_ms=-700)
    nemesis = ClockNemesis(cluster, options, 0, NodeLocks(), offsets)
    nemesis.invoke("start-clock", FaultTarget(nodes=("n2",)))
    probe_offset, round_trip = _probe_reads(cluster.node("n2"), -700)
    assert abs(probe_offset + 700) < 100 + round_trip
    assert abs(read_probe_time(cluster.node("n1"))[0]) < 100 + round_trip
    measured = measure_clock_offsets(cluster)
    assert abs(measured.offsets_ms["n2"] + 700) < 50
    assert abs(measured.offsets_ms["n1"]) < 50
    # netns nodes share the host's system clock: only the injected offset differs.
    assert abs(measured.system_offsets_ms["n2"]) <= measured.uncertainty_ms["n2"] + 5
    nemesis.invoke("stop-clock", None)
    probe_offset, round_trip = _probe_reads(cluster.node("n2"), 0)
    assert abs(probe_offset) < 100 + round_trip


def test_a_strobed_clock_flips_between_its_two_offsets(healed: ClusterHandle) -> None:
    cluster = healed
    options = ClockOptions(
        mode="strobe", target=TargetSpec("nodes", None, ("n3",)), offset_ms=600, period_ms=3000
    )
    nemesis = ClockNemesis(cluster, options, 1, NodeLocks(), {})
    nemesis.invoke("start-clock", FaultTarget(nodes=("n3",), hold_seconds=10))
    samples: list[float] = []

    def seen_both() -> bool:
        samples.append(read_probe_time(cluster.node("n3"))[0])
        return any(abs(s - 600) < 150 for s in samples) and any(abs(s) < 150 for s in samples)

    try:
        wait_until(
            seen_both,
            timeout=8,
            what="n3's clock at both strobe offsets",
            interval=0.5,
            details=lambda: samples,
        )
    finally:
        nemesis.invoke("stop-clock", None)


def _connect_ms(cluster: ClusterHandle, source: str) -> dict[str, float]:
    """Median of 7 TCP connects from ``source`` to each peer (a connect is one round trip)."""
    answers = _connects(cluster, cluster.node(source), timeout=2.0, repeat=7)
    assert all(isinstance(v, float) for v in answers.values()), answers
    return {peer: float(v) for peer, v in answers.items()}  # type: ignore[arg-type]


def test_netem_delay_shows_in_measured_round_trips_and_heal_removes_it(
    healed: ClusterHandle,
) -> None:
    cluster = healed
    baseline = _connect_ms(cluster, "n2")["n1"]
    options = NetemOptions(target=TargetSpec("nodes", None, ("n1",)), delay_ms=60, jitter_ms=5)
    nemesis = NetemNemesis(cluster, options, 0, NodeLocks(), random.Random(1))
    action = nemesis.invoke("start-netem", FaultTarget(nodes=("n1",), hold_seconds=30))
    assert action.description["links"]["n1"] == ["n2", "n3", "n4", "n5"]
    during = _connect_ms(cluster, "n2")
    delayed, untouched = during["n1"], during["n3"]
    assert baseline < 20, (baseline, untouched)
    assert untouched < 20, (baseline, untouched)
    assert 50 <= delayed - baseline <= 120, (baseline, delayed)
    assert heal_cluster(cluster) == []
    assert _connect_ms(cluster, "n2")["n1"] < 20


def test_netem_total_loss_per_link_blocks_only_that_link(healed: ClusterHandle) -> None:
    cluster = healed
    options = NetemOptions(target=TargetSpec("all"), links=(("n4", "n5"),), loss=1.0)
    nemesis = NetemNemesis(cluster, options, 3, NodeLocks(), random.Random(2))
    nemesis.invoke("start-netem", FaultTarget(nodes=("n4", "n5"), hold_seconds=30))
    from_n4 = _connects(cluster, cluster.node("n4"))
    assert not isinstance(from_n4["n5"], float)
    assert all(isinstance(from_n4[peer], float) for peer in ("n1", "n2", "n3"))
    nemesis.invoke("stop-netem", None)
    assert isinstance(_connects(cluster, cluster.node("n4"))["n5"], float)


def _process_state(node: Node) -> str:
    pid = daemon_pid(node, "probe")
    if pid is None:
        return "gone"
    status = node.run(f"grep '^State:' /proc/{pid}/status").stdout.split()
    return status[1] if len(status) > 1 else "?"


def _start_harness(inventory: Path, records: Path, *, output: int) -> subprocess.Popen[str]:
    """The SIGINT harness (a NemesisRunner with every fault on) as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", HARNESS_MODULE, str(inventory), str(records)],
        cwd=HERE.parents[1],  # the repository root, where the tests package is found
        stdout=output,
        stderr=output,
        text=True,
    )


def _wait_for_faults(records: Path, wanted: set[str], harness: subprocess.Popen[Any]) -> None:
    """Until the harness has recorded every wanted ``start-*`` as done without error (60 s)."""
    done: set[str] = set()

    def all_done_or_exited() -> bool:
        if records.exists():
            lines = [json.loads(x) for x in records.read_text().splitlines() if x.strip()]
            done.update(r["f"] for r in lines if r["type"] == "info" and "error" not in r["value"])
        return wanted <= done or harness.poll() is not None

    wait_until(all_done_or_exited, timeout=60, what=f"the faults {sorted(wanted)}", interval=0.2)
    assert wanted <= done, (done, harness.poll())


def _leftovers(node: Node) -> list[str]:
    """Anything a fault left on the node: rules, helpers, a moved clock, a stopped server."""
    found = []
    rules = node.run("iptables -w -S").stdout
    if "LOCKBENCH" in rules or "NFQUEUE" in rules:
        found.append(f"rules: {rules}")
    files = node.run(f"ls {node.data_dir}").stdout.split()
    found += [f"pidfile {f}" for f in files if f.startswith("lockbench-") and f.endswith(".pid")]
    processes = node.run("ps -eo args").stdout.splitlines()
    found += [p for p in processes if "lockbench-helper" in p and node.data_dir in p]
    offset = node.run(f"cat {offset_path(node)}").stdout.strip()
    if float(offset) != 0.0:
        found.append(f"clock offset {offset}")
    if _process_state(node) not in ("S", "R"):
        found.append(f"probe server state {_process_state(node)}")
    return found


def test_sigint_during_a_schedule_with_every_fault_on_leaves_nothing_behind(
    healed: ClusterHandle, tmp_path: Path
) -> None:
    cluster = healed
    records = tmp_path / "records.jsonl"
    inventory = cluster.inventory.cluster_dir / "inventory.yaml"
    harness = _start_harness(inventory, records, output=subprocess.PIPE)
    try:
        wanted = {f"start-{f}" for f in ("partition", "kill", "pause", "clock", "netem")}
        _wait_for_faults(records, wanted, harness)
        # Every fault is on: check that from the outside before interrupting.
        assert _process_state(cluster.node("n1")) == "gone"
        assert _process_state(cluster.node("n2")) == "T"
        assert "LOCKBENCH" in cluster.node("n3").run("iptables -w -S").stdout
        harness.send_signal(signal.SIGINT)
        out, err = harness.communicate(timeout=90)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    assert harness.returncode == 130, err
    assert json.loads(out.strip().splitlines()[-1]) == {"heal_errors": []}, err
    problems = on_nodes(list(cluster.nodes), _leftovers)
    assert problems == {name: [] for name in NAMES}, problems
    assert all(_reachability(cluster).values())


@pytest.mark.skipif(
    os.environ.get("LOCKBENCH_LONG") != "1", reason="long variant: set LOCKBENCH_LONG=1"
)
def test_cluster_heal_by_hand_repairs_what_a_sigkilled_bench_left(
    healed: ClusterHandle, tmp_path: Path
) -> None:
    """No heal_all ran: heal_cluster alone (``lockbench cluster heal``) must clean up."""
    cluster = healed
    records = tmp_path / "records.jsonl"
    inventory = cluster.inventory.cluster_dir / "inventory.yaml"
    harness = _start_harness(inventory, records, output=subprocess.DEVNULL)
    try:
        wanted = {f"start-{f}" for f in ("partition", "pause", "clock", "netem")}
        _wait_for_faults(records, wanted, harness)
    finally:
        harness.kill()
        harness.wait()
    assert heal_cluster(cluster, ProbeBackend()) == []
    ProbeBackend().start(cluster.node("n1"))  # killed servers are the run's to restart
    problems = on_nodes(list(cluster.nodes), _leftovers)
    assert problems == {name: [] for name in NAMES}, problems


_UDP_COUNT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.1)
deadline, count = time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < deadline:
    try:
        s.recv(2048)
        count += 1
    except socket.timeout:
        pass
print(count)
"""
_UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"%d" % i, (sys.argv[1], int(sys.argv[2])))
"""


def _udp_bound(node: Node, port: int) -> bool:
    """Whether a UDP socket on the node listens on ``port``."""
    return f":{port}" in node.run(f"ss -Huln 'sport = :{port}'", check=False).stdout


def _udp_received(cluster: ClusterHandle, sender: str, receiver: str, count: int) -> int:
    """Datagrams ``receiver`` got while ``sender`` sent ``count`` of them."""
    to = cluster.node(receiver)
    port = free_port()
    python = shlex.quote(sys.executable)
    listen = f"{python} -c {shlex.quote(_UDP_COUNT)} {to.address} {port} 4"
    send = f"{python} -c {shlex.quote(_UDP_SEND)} {to.address} {port} {count}"
    received: list[int] = []
    listener = threading.Thread(target=lambda: received.append(int(to.run(listen).stdout)))
    listener.start()
    wait_until(lambda: _udp_bound(to, port), timeout=10, what=f"a UDP listener on {receiver}")
    cluster.node(sender).run(send)
    listener.join()
    return received[0]


def test_netem_duplicate_delivers_every_datagram_twice(healed: ClusterHandle) -> None:
    cluster = healed
    options = NetemOptions(target=TargetSpec("nodes", None, ("n1",)), duplicate=1.0)
    nemesis = NetemNemesis(cluster, options, 2, NodeLocks(), random.Random(4))
    nemesis.invoke("start-netem", FaultTarget(nodes=("n1",), hold_seconds=30))
    try:
        assert _udp_received(cluster, "n1", "n2", 50) == 100
    finally:
        nemesis.invoke("stop-netem", None)
    assert _udp_received(cluster, "n1", "n2", 50) == 50
