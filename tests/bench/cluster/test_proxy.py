"""The link proxy: forwards, blocks like a DROP, heals, delays; and its fault model and ports.

The process tests run the real proxy (started by a LinkFaultController, as the reference backend
does) between a 2-node local cluster's links and real TCP echo servers standing in for the
nodes' peer ports. Ports: 23100-23199 (this task's 23000-23999).
"""

from __future__ import annotations

import random
import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.cluster import open_cluster
from bench.cluster.link_faults import LinkFaultController, LinkFaultError, plan_ports
from bench.cluster.local import local_down, local_up
from bench.cluster.proxy import (
    RETRANSMIT_TIMEOUT_S,
    Link,
    LinkFault,
    ProxyError,
    parse_request,
)
from lockbench.errors import ClusterError, ConfigError

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

BASE_OFFSET = 16100  # n1: 23100 client, 23101 peer, 23102 link n1->n2, 23103 control; n2: 2311x
N1_PEER, N2_PEER = 23101, 23111
SHORT_S = 0.5


# ------------------------------------------------------------------------------------------------
# The fault model and the control protocol (no sockets)


def test_loss_delays_a_chunk_by_retransmission_timeouts_instead_of_dropping_it() -> None:
    rng = random.Random(7)
    lossy = LinkFault(loss=0.5)
    delays = [lossy.chunk_delay_s(rng) for _ in range(2000)]
    # never lost: 0; lost once: one RTO; twice: 1 + 2 RTOs ... (exponential backoff)
    allowed = {0.0, RETRANSMIT_TIMEOUT_S, 3 * RETRANSMIT_TIMEOUT_S, 7 * RETRANSMIT_TIMEOUT_S}
    assert {round(d, 6) for d in delays if d < 8 * RETRANSMIT_TIMEOUT_S} <= {
        round(a, 6) for a in allowed
    }
    late = sum(1 for d in delays if d > 0) / len(delays)
    assert 0.45 < late < 0.55


def test_jitter_stays_within_its_bounds_and_never_goes_negative() -> None:
    rng = random.Random(3)
    fault = LinkFault(delay_ms=10, jitter_ms=20)
    delays = [fault.chunk_delay_s(rng) for _ in range(1000)]
    assert min(delays) == 0.0  # 10 - 20 clamps at zero
    assert max(delays) <= 0.030
    assert LinkFault(delay_ms=50).chunk_delay_s(rng) == pytest.approx(0.050)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_ms": -1}, "delay_ms"),
        ({"jitter_ms": 1e9}, "jitter_ms"),
        ({"loss": 1.0}, "loss"),
    ],
)
def test_impossible_faults_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        LinkFault(**kwargs)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"op": "explode"}', "needs an op"),
        (b'{"op": "block", "links": [["n1"]]}', "pairs"),
        (b'{"op": "quality", "links": [], "delay_ms": "slow"}', "must be a number"),
    ],
)
def test_malformed_control_requests_are_refused(line: bytes, message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        parse_request(line)


def test_proxy_ports_sit_between_lockd_ports_or_are_not_planned(tmp_path: Path) -> None:
    inventory = local_up(tmp_path / "c", base_offset=BASE_OFFSET)
    try:
        plan = plan_ports(inventory)
        assert plan is not None
        assert plan.link_ports[Link("n1", "n2")] == 23102
        assert plan.link_ports[Link("n1", "n5")] == 23105
        assert plan.link_ports[Link("n5", "n4")] == 23145
        assert plan.control_port == 23106
    finally:
        local_down(tmp_path / "c")
    crowded = local_up(tmp_path / "d", base_offset=BASE_OFFSET, offset_step=4)
    try:
        assert plan_ports(crowded) is None  # 4 links per node do not fit in a step of 4
        with open_cluster(crowded) as cluster:
            assert cluster.link_faults is None
            assert "partition" not in cluster.capabilities
    finally:
        local_down(tmp_path / "d")


# ------------------------------------------------------------------------------------------------
# The proxy process between real endpoints


@dataclass
class EchoServer:
    """A TCP echo server standing in for a node's peer port; counts what reached it."""

    port: int
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> None:
        echo = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with echo.lock:
                    echo.connections += 1
                while data := self.request.recv(65536):
                    with echo.lock:
                        echo.received += data
                    self.request.sendall(data)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[LinkFaultController, EchoServer, EchoServer]]:
    """A 2-node local cluster whose link proxy forwards to two echo servers."""
    echoes = (EchoServer(N1_PEER), EchoServer(N2_PEER))
    cluster_dir = tmp_path / "c"
    try:
        for echo in echoes:
            echo.start()
        with open_cluster(local_up(cluster_dir, nodes=2, base_offset=BASE_OFFSET)) as cluster:
            controller = cluster.link_faults
            assert controller is not None
            assert controller.start_proxy({"n1": N1_PEER, "n2": N2_PEER})
            yield controller, echoes[0], echoes[1]
    finally:
        local_down(cluster_dir)
        for echo in echoes:
            echo.stop()


def round_trip(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_proxy_forwards_both_ways_and_counts_bytes(
    proxied: tuple[LinkFaultController, EchoServer, EchoServer],
) -> None:
    controller, _, n2 = proxied
    port = controller.proxy_port("n1", "n2")
    with socket.create_connection(("127.0.0.1", port), timeout=SHORT_S * 4) as conn:
        assert round_trip(conn, b"hello n2") == b"hello n2"
    assert bytes(n2.received) == b"hello n2"
    forward = {s.link: s for s in controller.state().links}[Link("n1", "n2")]
    assert forward.bytes_delivered == len(b"hello n2")
    controller.set_quality(["n1"], delay_ms=5)
    assert controller.start_proxy({"n1": N1_PEER, "n2": N2_PEER}) is False  # same routes: kept
    assert controller.state().faulty() == {}  # ... and healed: a redeploy starts healthy


def test_blocked_link_delivers_nothing_new_connects_hang_and_heal_resumes(
    proxied: tuple[LinkFaultController, EchoServer, EchoServer],
) -> None:
    controller, _, n2 = proxied
    port = controller.proxy_port("n1", "n2")
    existing = socket.create_connection(("127.0.0.1", port), timeout=SHORT_S * 4)
    fresh: list[socket.socket] = []
    try:
        assert round_trip(existing, b"before") == b"before"
        state = controller.partition({"n2": ["n1"]})  # n2 cannot hear from n1
        assert state.blocked() == {Link("n1", "n2")}

        existing.settimeout(SHORT_S)
        existing.sendall(b"during")  # accepted by the kernel, then held: never delivered
        with pytest.raises(TimeoutError):
            existing.recv(100)
        # New connections are never refused; they hang (kernel accept queue full, SYN dropped)
        # or connect and then carry nothing.
        hung = 0
        for _ in range(3):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=SHORT_S)
            except TimeoutError:
                hung += 1
                continue
            conn.settimeout(SHORT_S)
            conn.sendall(b"x")
            fresh.append(conn)
        assert hung >= 1
        time.sleep(SHORT_S)
        assert bytes(n2.received) == b"before"
        assert n2.connections == 1

        controller.heal()
        existing.settimeout(SHORT_S * 8)
        assert existing.recv(100) == b"during"  # held bytes delivered after heal, in order
        assert round_trip(existing, b"after") == b"after"
        with socket.create_connection(("127.0.0.1", port), timeout=SHORT_S * 8) as conn:
            assert round_trip(conn, b"new") == b"new"
        assert controller.state().faulty() == {}
    finally:
        existing.close()
        for conn in fresh:  # half-open ones finish their handshake only after TCP backoff
            conn.close()


def test_a_one_way_block_holds_only_the_bytes_going_that_way(
    proxied: tuple[LinkFaultController, EchoServer, EchoServer],
) -> None:
    controller, _, n2 = proxied
    with socket.create_connection(("127.0.0.1", controller.proxy_port("n1", "n2")), 2) as conn:
        assert round_trip(conn, b"warm") == b"warm"
        controller.partition({"n1": ["n2"]})  # n1 cannot hear from n2; n2 still hears n1
        conn.settimeout(SHORT_S)
        conn.sendall(b"heard")
        with pytest.raises(TimeoutError):
            conn.recv(100)  # n2's echo is n2 -> n1: held
        assert bytes(n2.received) == b"warmheard"  # n1 -> n2 got through
        controller.heal()
        conn.settimeout(SHORT_S * 8)
        assert conn.recv(100) == b"heard"


def test_delay_grows_the_round_trip_by_about_the_delay(
    proxied: tuple[LinkFaultController, EchoServer, EchoServer],
) -> None:
    controller, _, _ = proxied
    port = controller.proxy_port("n1", "n2")

    def median_rtt_ms(conn: socket.socket) -> float:
        samples = []
        for _ in range(7):
            start = time.perf_counter()
            assert round_trip(conn, b"ping") == b"ping"
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        base = median_rtt_ms(conn)
        # n1's bytes to n2 wait 60 ms; n2's replies on this connection are link n2->n1 (healthy)
        controller.set_quality([("n1", "n2")], delay_ms=60)
        delayed = median_rtt_ms(conn)
        controller.set_quality(["n2"], delay_ms=40)  # node form: every link from n2
        both = median_rtt_ms(conn)
        controller.set_quality(["n1", "n2"])  # zeros restore the links
        healed = median_rtt_ms(conn)
    assert 55 <= delayed - base <= 60 + 40, (base, delayed)
    assert 95 <= both - base <= 100 + 40, (base, both)
    assert healed < base + 20, (base, healed)


def test_controller_refuses_unknown_nodes_and_reports_a_stopped_proxy(
    proxied: tuple[LinkFaultController, EchoServer, EchoServer],
) -> None:
    controller, _, _ = proxied
    with pytest.raises(ConfigError, match="no node"):
        controller.partition({"n9": ["n1"]})
    with pytest.raises(ConfigError, match="loss"):
        controller.set_quality(["n1"], loss=2.0)
    assert controller.stop_proxy()
    assert controller.heal().links == ()  # nothing runs, so nothing to heal
    with pytest.raises(LinkFaultError, match="did not answer"):
        controller.state()


def test_local_down_stops_the_proxy(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "c"
    with open_cluster(local_up(cluster_dir, nodes=2, base_offset=BASE_OFFSET)) as cluster:
        assert cluster.link_faults is not None
        cluster.link_faults.start_proxy({"n1": N1_PEER, "n2": N2_PEER})
        assert cluster.link_faults.proxy_running()
        control = cluster.link_faults.plan.control_port
    removed = local_down(cluster_dir)
    assert any("linkproxy/linkproxy" in item for item in removed), removed
    deadline = time.monotonic() + 5  # SIGKILL is sent, not waited for: give it a moment
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", control), timeout=SHORT_S).close()
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the proxy's control port {control} still answers after local_down")
    assert not (cluster_dir / "linkproxy").exists()


def test_a_taken_link_port_fails_the_start_naming_the_link_and_port(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "c"
    try:
        with (  # noqa: PT012 - the proxy start inside the cluster's context is what fails
            open_cluster(local_up(cluster_dir, nodes=2, base_offset=BASE_OFFSET)) as cluster,
            socket.create_server(("127.0.0.1", 23112)),  # the port of link n2->n1
            pytest.raises(ClusterError, match=r"link n2->n1: cannot listen on 127\.0\.0\.1:23112"),
        ):
            assert cluster.link_faults is not None
            cluster.link_faults.start_proxy({"n1": N1_PEER, "n2": N2_PEER})
    finally:
        local_down(cluster_dir)
