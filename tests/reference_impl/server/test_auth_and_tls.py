"""An auth token and TLS on the client port: right credentials work, wrong ones get clear errors."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import AuthError, LockServiceError
from reference_impl.server.local_cluster import LocalCluster

pytestmark = pytest.mark.process  # starts processes (docs/development.md)


def test_wrong_or_missing_token_is_refused_and_the_right_one_works(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    cluster = make_cluster(size=1, extra_config={"auth_token_file": str(token_file)})
    cluster.start_all()

    async def scenario() -> None:
        with pytest.raises(AuthError, match="missing auth token"):
            await AsyncLockClient.connect(cluster.endpoints, timeout=2.0)
        with pytest.raises(AuthError, match="wrong auth token"):
            await AsyncLockClient.connect(cluster.endpoints, timeout=2.0, auth_token="guess")
        client = await AsyncLockClient.connect(cluster.endpoints, auth_token="s3cret")
        try:
            lease = await client.acquire("auth/x")
            assert lease.token > 0
        finally:
            await client.close()

    asyncio.run(scenario())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make a cert")
def test_tls_client_port_serves_tls_and_refuses_plain_clients_clearly(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    cluster = make_cluster(size=1, extra_config={"tls": {"cert": str(cert), "key": str(key)}})
    cluster.start_all()
    context = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        client = await AsyncLockClient.connect(cluster.endpoints, ssl=context)
        try:
            assert (await client.acquire("tls/x")).token > 0
        finally:
            await client.close()
        with pytest.raises(LockServiceError, match="TLS"):
            await AsyncLockClient.connect(cluster.endpoints, timeout=0.5)

    asyncio.run(scenario())
