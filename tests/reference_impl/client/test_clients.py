"""The sync client's ``with client.lock(...)`` and the lockctl commands against a real lockd."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import AcquireTimeout
from reference_impl.client.sync_client import LockClient
from reference_impl.server.local_cluster import LocalCluster
from tests.support.ports import free_port_block

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("lockd1"), size=1, base_port=free_port_block(10))
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def test_sync_lock_context_gives_a_token_and_releases_on_exit(single: LocalCluster) -> None:
    with (
        LockClient.connect(single.endpoints, ttl=5.0) as first,
        LockClient.connect(single.endpoints, ttl=5.0) as second,
    ):
        with first.lock("jobs/42") as lease:
            assert first.check_token("jobs/42", lease.token)
            with pytest.raises(AcquireTimeout):
                second.acquire("jobs/42", timeout=0)
        with second.lock("jobs/42") as later:
            assert later.token > lease.token
        assert second.owner("jobs/42").holders == ()


def lockctl(
    single: LocalCluster, *args: str, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_impl.client.lockctl", "-e", single.endpoints[0], *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_lockctl_acquire_owner_watch_status_members(single: LocalCluster) -> None:
    acquired = lockctl(single, "acquire", "ctl/x", "--hold", "0")
    assert acquired.returncode == 0, acquired.stderr
    token = json.loads(acquired.stdout)["token"]
    watched = lockctl(single, "watch", "ctl/", "--from-revision", "1", "--count", "2")
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [(e["kind"], e["token"]) for e in events] == [("acquired", token), ("released", token)]
    status = json.loads(lockctl(single, "status").stdout)
    assert status["role"] == "leader"
    assert status["id"] == "n1"
    members = json.loads(lockctl(single, "members").stdout)
    assert members[0]["client_endpoint"] == single.endpoints[0]
    owner = json.loads(lockctl(single, "owner", "ctl/x").stdout)
    assert owner["holders"] == []


def test_lockctl_release_frees_a_stuck_holder_and_busy_exits_1(single: LocalCluster) -> None:
    import asyncio

    async def hold() -> tuple[AsyncLockClient, str]:
        client = await AsyncLockClient.connect(single.endpoints, ttl=30.0)
        lease = await client.acquire("ctl/stuck")
        return client, lease.session_id

    loop = asyncio.new_event_loop()
    try:
        client, session = loop.run_until_complete(hold())
        busy = lockctl(single, "acquire", "ctl/stuck", "--wait", "0", "--hold", "0")
        assert busy.returncode == 1
        assert "AcquireTimeout" in busy.stderr
        released = lockctl(single, "release", "ctl/stuck")
        assert released.returncode == 0, released.stderr
        assert json.loads(released.stdout)["session"] == session
        owner = json.loads(lockctl(single, "owner", "ctl/stuck").stdout)
        assert owner["holders"] == []
        loop.run_until_complete(client.close())
    finally:
        loop.close()


def test_lockd_and_lockctl_help_explain_themselves() -> None:
    for module in ("reference_impl.server.main", "reference_impl.client.lockctl"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0
        assert "example" in result.stdout
    lockd_help = subprocess.run(
        [sys.executable, "-m", "reference_impl.server.main", "--help"],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    for switch in ("--unsafe-grant-before-commit", "--unsafe-no-check-quorum", "--config"):
        assert switch in lockd_help


def test_lockd_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: n9\ndata_dir: /tmp/x\nmembers:\n  n1: {host: h, peer_port: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "reference_impl.server.main", "--config", str(bad)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("lockd: members.n1: missing")
    assert "Traceback" not in result.stderr
