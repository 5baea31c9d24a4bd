"""Mutual TLS on the Raft peer links: a TLS group elects and commits; a node without TLS, with a
certificate from another CA, or with a certificate naming no member is refused, the others keep
serving, and the logs say why (once, not on every reconnect); configuration mistakes are reported
at start-up. Ports: free ones, asked of the kernel."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.raft.metrics import ReplicaMetrics
from reference_impl.raft.types import AppendResponse, Message
from reference_impl.server.config import PeerTlsConfig, ServerConfigError, load_config
from reference_impl.server.local_cluster import LocalCluster
from reference_impl.server.main import build_parser, resolve_config
from reference_impl.server.peer_tls import peer_tls_contexts
from reference_impl.server.peer_transport import PEER_MAGIC, PeerTransport
from reference_impl.server.replica import Replica
from tests.reference_impl.server.peer_certs import CertificateAuthority
from tests.support.ports import free_port_block
from tests.support.waiting import wait_until_async

NODES = ("n1", "n2", "n3")
OBSERVE_SECONDS = 1.5
"""How long the odd node is watched after the others elected: several election timeouts."""


class CounterMachine:
    """Deterministic: each applied command is appended; apply returns how many there are."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def apply(self, index: int, data: bytes) -> int:
        self.commands.append(data)
        return len(self.commands)

    def snapshot(self) -> bytes:
        return b"".join(self.commands)

    def restore(self, data: bytes, index: int) -> None:
        self.commands = [data]


def _peers(base_port: int) -> dict[str, tuple[str, int]]:
    return {node_id: ("127.0.0.1", base_port + i) for i, node_id in enumerate(NODES)}


async def _run_group(
    tmp_path: Path, base_port: int, tls: Mapping[str, PeerTlsConfig | None]
) -> tuple[dict[str, Replica], dict[str, CounterMachine], int]:
    """Starts one Replica per node with its own peer TLS (or none), waits for a leader among
    n1/n2, commits through it, watches n3 for OBSERVE_SECONDS; returns replicas stopped."""
    peers = _peers(base_port)
    machines = {node_id: CounterMachine() for node_id in NODES}
    replicas = {
        node_id: Replica(
            node_id,
            peers,
            tmp_path / node_id,
            machines[node_id],
            tick_seconds=0.02,
            fsync=False,
            peer_tls=peer_tls_contexts(config, node_id) if config else None,
        )
        for node_id, config in tls.items()
    }
    try:
        for replica in replicas.values():
            await replica.start()
        await wait_until_async(
            lambda: any(replicas[n].is_leader for n in ("n1", "n2")),
            timeout=5.0,
            what="a leader among n1, n2",
        )
        leader = next(replicas[n] for n in ("n1", "n2") if replicas[n].is_leader)
        committed = 0
        for i in range(20):
            committed = await leader.propose(b"cmd-%d" % i, timeout=5.0)
        deadline = time.monotonic() + OBSERVE_SECONDS
        while time.monotonic() < deadline:
            assert replicas["n3"].leader_id is None, "n3 must never follow the TLS group"
            await asyncio.sleep(0.05)
        return replicas, machines, committed
    finally:
        for replica in replicas.values():
            await replica.stop()


def _warnings(
    caplog: pytest.LogCaptureFixture, node_id: str, text: str, *, level: int = logging.WARNING
) -> list[str]:
    """Messages of ``node_id`` logged at ``level`` or above that contain ``text``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= level
        and record.getMessage().startswith(f"{node_id}: ")
        and text in record.getMessage()
    ]


def test_three_nodes_with_peer_tls_elect_and_commit(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")

    async def scenario() -> None:
        peers = _peers(free_port_block(3))
        machines = {node_id: CounterMachine() for node_id in NODES}
        replicas = [
            Replica(
                node_id,
                peers,
                tmp_path / node_id,
                machines[node_id],
                tick_seconds=0.02,
                fsync=False,
                peer_tls=peer_tls_contexts(ca.issue(node_id), node_id),
            )
            for node_id in NODES
        ]
        try:
            for replica in replicas:
                await replica.start()
            await wait_until_async(
                lambda: any(r.is_leader for r in replicas), timeout=5.0, what="a leader"
            )
            leader = next(r for r in replicas if r.is_leader)
            assert await leader.propose(b"hello", timeout=5.0) == 1
            await wait_until_async(
                lambda: all(m.commands == [b"hello"] for m in machines.values()),
                timeout=5.0,
                what="the entry applied on every node",
            )
            assert all(r.metrics.tls_handshake_failures == 0 for r in replicas)
        finally:
            for replica in replicas:
                await replica.stop()

    asyncio.run(scenario())


def test_a_plain_node_cannot_join_a_tls_group_and_both_sides_say_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reference_impl.server.peer_transport")
    ca = CertificateAuthority.create(tmp_path / "pki")
    tls = {"n1": ca.issue("n1"), "n2": ca.issue("n2"), "n3": None}
    replicas, machines, committed = asyncio.run(_run_group(tmp_path, free_port_block(3), tls))

    assert committed == 20
    assert machines["n3"].commands == []
    assert replicas["n3"].commit_index == 0
    assert not replicas["n3"].is_leader
    for node_id in ("n1", "n2"):
        refused = _warnings(caplog, node_id, "the peer speaks plain TCP; use peer_tls there")
        # Once per state change: the plain node redials every second, the log stays quiet.
        assert 1 <= len(refused) <= 2, refused
        assert replicas[node_id].metrics.tls_handshake_failures >= 1
    told = _warnings(caplog, "n3", "a TLS handshake on this plain peer port")
    assert 1 <= len(told) <= 2, told
    hung_up = _warnings(caplog, "n3", "closed the connection at once", level=logging.INFO)
    assert {m.split(":")[1].strip().split()[0] for m in hung_up} == {"n1", "n2"}
    assert len(hung_up) == 2, hung_up


def test_a_node_with_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reference_impl.server.peer_transport")
    ca = CertificateAuthority.create(tmp_path / "pki")
    rogue = CertificateAuthority.create(tmp_path / "rogue-pki", name="rogue")
    tls = {"n1": ca.issue("n1"), "n2": ca.issue("n2"), "n3": rogue.issue("n3")}
    base_port = free_port_block(3)
    replicas, machines, committed = asyncio.run(_run_group(tmp_path, base_port, tls))

    assert committed == 20
    assert machines["n3"].commands == []
    for node_id in ("n1", "n2"):
        refused = _warnings(
            caplog, node_id, f"n3 at 127.0.0.1:{base_port + 2}: certificate verify failed"
        )
        assert refused
        assert all("not signed by the CA in this node's peer_tls.ca" in m for m in refused)
        assert len(refused) <= 2, refused
    # n3 distrusts them too (it trusts only the rogue CA): its dials fail verification.
    own = _warnings(caplog, "n3", "certificate verify failed")
    assert {m.split(":")[1].strip().split()[0] for m in own} == {"n1", "n2"}
    assert replicas["n3"].metrics.tls_handshake_failures >= 2


def test_a_certificate_that_names_no_member_is_refused_on_the_peer_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate from the same CA (e.g. a client's) does not make its holder a peer."""
    caplog.set_level(logging.INFO, logger="reference_impl.server.peer_transport")
    ca = CertificateAuthority.create(tmp_path / "pki")
    outsider = ca.issue("lockctl")
    peers = _peers(free_port_block(3))

    async def scenario() -> bytes:
        replica = Replica(
            "n1",
            peers,
            tmp_path / "n1",
            CounterMachine(),
            fsync=False,
            peer_tls=peer_tls_contexts(ca.issue("n1"), "n1"),
        )
        await replica.start()
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_cert_chain(outsider.cert, outsider.key)
            context.load_verify_locations(outsider.ca)
            reader, writer = await asyncio.open_connection(
                *peers["n1"], ssl=context, server_hostname="n1"
            )
            try:
                async with asyncio.timeout(5):
                    return await reader.read(100)
            finally:
                writer.close()
        finally:
            await replica.stop()

    assert asyncio.run(scenario()) == b""
    refused = _warnings(caplog, "n1", "its certificate names ['lockctl'], no member")
    assert len(refused) == 1, caplog.text


def test_own_certificate_problems_are_reported_before_anything_listens(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")
    rogue = CertificateAuthority.create(tmp_path / "rogue-pki", name="rogue")
    good = ca.issue("n1")

    with pytest.raises(ServerConfigError, match=r"peer_tls\.key: cannot read .*missing\.key"):
        peer_tls_contexts(PeerTlsConfig(good.cert, tmp_path / "missing.key", good.ca), "n1")
    other_key = ca.issue("n2").key
    with pytest.raises(ServerConfigError, match=r"peer_tls\.cert/key: cannot use"):
        peer_tls_contexts(PeerTlsConfig(good.cert, other_key, good.ca), "n1")
    with pytest.raises(ServerConfigError, match=r"would be refused by its peers.*signed by"):
        peer_tls_contexts(PeerTlsConfig(good.cert, good.key, rogue.cert_path), "n1")
    misnamed = ca.issue("n1", dns_name="node-one")
    with pytest.raises(ServerConfigError, match=r"not valid for 'n1'.*DNS subjectAltName"):
        peer_tls_contexts(misnamed, "n1")


@pytest.mark.parametrize(
    ("peer_tls", "message"),
    [
        ({"cert": "a.crt", "key": "a.key"}, "peer_tls: missing ca; mutual TLS"),
        ({"cert": "a.crt", "ca": "ca.crt"}, "peer_tls: missing key"),
        ({"cert": "a.crt", "key": "a.key", "ca": "c", "verify": False}, "unknown key"),
        ("on", "peer_tls: must be a mapping"),
    ],
)
def test_incomplete_peer_tls_sections_name_what_is_missing(
    tmp_path: Path, peer_tls: Any, message: str
) -> None:
    path = tmp_path / "n1.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "id": "n1",
                "data_dir": str(tmp_path / "data"),
                "members": {
                    "n1": {"host": "127.0.0.1", "peer_port": 1, "client_port": 2, "http_port": 3}
                },
                "peer_tls": peer_tls,
            }
        )
    )
    with pytest.raises(ServerConfigError, match=message):
        load_config(path)


def test_peer_tls_flags_go_together_and_override_the_file(tmp_path: Path) -> None:
    member = ["--id", "n1", "--data-dir", str(tmp_path), "--member", "n1=127.0.0.1:1:2:3"]
    parser = build_parser()
    with pytest.raises(ServerConfigError, match="missing --peer-tls-key, --peer-tls-ca"):
        resolve_config(parser.parse_args([*member, "--peer-tls-cert", "n1.crt"]))
    flags = ["--peer-tls-cert", "n1.crt", "--peer-tls-key", "n1.key", "--peer-tls-ca", "ca.crt"]
    config = resolve_config(parser.parse_args([*member, *flags]))
    assert config.peer_tls == PeerTlsConfig(Path("n1.crt"), Path("n1.key"), Path("ca.crt"))
    assert resolve_config(parser.parse_args(member)).peer_tls is None


@pytest.mark.process
def test_lockd_with_an_unreadable_peer_certificate_exits_with_a_clear_error(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")
    good = ca.issue("n1")
    client_port = free_port_block(3)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reference_impl.server.main",
            "--id",
            "n1",
            "--data-dir",
            str(tmp_path / "data"),
            "--member",
            f"n1=127.0.0.1:{client_port + 1}:{client_port}:{client_port + 2}",
            "--peer-tls-cert",
            str(tmp_path / "nope.crt"),
            "--peer-tls-key",
            str(good.key),
            "--peer-tls-ca",
            str(good.ca),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "peer_tls.cert: cannot read" in result.stderr
    assert "nope.crt" in result.stderr


@pytest.mark.process
def test_real_lockd_cluster_with_peer_tls_serves_and_exports_the_counter(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")
    cluster = make_cluster(size=3, peer_tls={n: ca.issue(n) for n in NODES})
    cluster.start_all()
    for node in cluster.nodes:
        assert "peer_tls" in yaml.safe_load(node.config_file.read_text())

    async def scenario() -> int:
        client = await AsyncLockClient.connect(cluster.endpoints)
        try:
            return (await client.acquire("peer-tls/x")).token
        finally:
            await client.close()

    async def plain_peer() -> bytes:
        reader, writer = await asyncio.open_connection(node.host, node.peer_port)
        try:
            writer.write(PEER_MAGIC)
            async with asyncio.timeout(5):
                return await reader.read(100)
        finally:
            writer.close()

    assert asyncio.run(scenario()) > 0
    node = cluster.nodes[0]
    assert asyncio.run(plain_peer()) == b"", "a plain dialler is cut off by the TLS peer port"
    with urllib.request.urlopen(f"http://{node.host}:{node.http_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "lockd_raft_tls_handshake_failures_total 1" in metrics
    assert "the peer speaks plain TCP; use peer_tls there" in node.log_file.read_text()


def test_a_node_at_the_address_of_another_is_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The dial checks the node id, not the address: if n3's address now leads to n2 (a
    redeploy reused it, or a typo in the member table), n1 refuses the link instead of sending
    n3's messages to n2."""
    caplog.set_level(logging.INFO, logger="reference_impl.server.peer_transport")
    ca = CertificateAuthority.create(tmp_path / "pki")
    base_port = free_port_block(2)
    n2_address = ("127.0.0.1", base_port + 1)
    n1_view = {"n1": ("127.0.0.1", base_port), "n2": n2_address, "n3": n2_address}
    received: list[Message] = []

    async def scenario() -> None:
        metrics = ReplicaMetrics()
        dialler = PeerTransport(
            "n1",
            n1_view,
            received.append,
            metrics,
            tls=peer_tls_contexts(ca.issue("n1"), "n1"),
        )
        listener = PeerTransport(
            "n2",
            {"n1": n1_view["n1"], "n2": n2_address},
            received.append,
            ReplicaMetrics(),
            tls=peer_tls_contexts(ca.issue("n2"), "n2"),
        )
        await listener.start()
        await dialler.start()
        try:
            await wait_until_async(
                lambda: "n2" in dialler.connected_peers(), timeout=5.0, what="n1's link to n2"
            )
            await wait_until_async(
                lambda: metrics.tls_handshake_failures >= 1, timeout=5.0, what="a refusal"
            )
            dialler.send_all([AppendResponse("n1", "n3", 1, True, 7)])
            dialler.send_all([AppendResponse("n1", "n2", 1, True, 8)])
            await wait_until_async(lambda: len(received) == 1, timeout=5.0, what="n2's message")
            assert "n3" not in dialler.connected_peers()
        finally:
            await dialler.stop()
            await listener.stop()

    asyncio.run(scenario())
    assert [m.dst for m in received] == ["n2"], "nothing meant for n3 reached n2"
    refused = _warnings(caplog, "n1", f"n3 at 127.0.0.1:{base_port + 1}: certificate verify failed")
    assert len(refused) == 1, caplog.text
    assert "not valid for 'n3'" in refused[0], caplog.text
