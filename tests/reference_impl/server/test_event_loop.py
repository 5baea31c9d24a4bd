"""lockd picks its event loop: uvloop when installed (auto), the standard loop on request, and a
clear error when uvloop is asked for but missing."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from reference_impl.server import event_loop
from reference_impl.server.peer_tls import peer_tls_contexts
from reference_impl.server.peer_transport import PEER_MAGIC, _HeldStreamProtocol
from tests.reference_impl.server.peer_certs import CertificateAuthority
from tests.support.ports import free_port


def test_auto_means_uvloop_where_installed_and_asyncio_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = importlib.util.find_spec("uvloop") is not None
    assert event_loop.resolve("auto") == ("uvloop" if installed else "asyncio")
    assert event_loop.resolve("asyncio") == "asyncio"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert event_loop.resolve("auto") == "asyncio"
    with pytest.raises(event_loop.EventLoopUnavailable, match="uvloop is not installed"):
        event_loop.resolve("uvloop")
    with pytest.raises(event_loop.EventLoopUnavailable, match="must be one of"):
        event_loop.resolve("trio")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")
def test_uvloop_runs_without_uvloop_run_as_in_debians_uvloop_0_17(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvloop

    monkeypatch.delattr(uvloop, "run", raising=False)  # uvloop.run came in 0.18
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    event_loop.run(main(), "uvloop")
    assert seen == ["uvloop"]


@pytest.mark.process
def test_lockd_refuses_an_unknown_event_loop_before_starting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reference_impl.server.main", "--event-loop", "trio"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--event-loop" in result.stderr
    assert "invalid choice" in result.stderr


def test_peer_tls_always_runs_the_standard_loop() -> None:
    assert event_loop.resolve("auto", peer_tls=True) == "asyncio"
    assert event_loop.resolve("asyncio", peer_tls=True) == "asyncio"
    with pytest.raises(event_loop.EventLoopUnavailable, match="cannot serve peer TLS"):
        event_loop.resolve("uvloop", peer_tls=True)


def _server_side_upgrade_of_a_plain_dialler(
    tmp_path: Path, port: int
) -> tuple[list[str], Callable[[], Coroutine[Any, Any, None]]]:
    """What an inbound peer link's TLS upgrade does when a plain client has already written."""
    ca = CertificateAuthority.create(tmp_path / "pki")
    server_context = peer_tls_contexts(ca.issue("n1"), "n1").server
    outcome: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(1.0):
                    await writer.start_tls(server_context)
                outcome.append("upgraded")
            except TimeoutError:
                outcome.append("stalled")
            except (OSError, ConnectionError) as error:
                outcome.append(f"refused: {type(error).__name__}")
            finally:
                writer.close()

        server = await loop.create_server(
            lambda: _HeldStreamProtocol(asyncio.StreamReader(), upgrade, loop=loop),
            "127.0.0.1",
            port,
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(PEER_MAGIC)
            async with asyncio.timeout(3.0):
                await reader.read(100)
            writer.close()
        finally:
            server.close()

    return outcome, scenario


def test_the_standard_loop_refuses_a_plain_dialler_on_a_tls_peer_port_at_once(
    tmp_path: Path,
) -> None:
    """What peer TLS relies on, and why it runs the standard loop: the upgrade of an accepted
    link fails at once when the dialler speaks plain TCP. On uvloop 0.23 the same upgrade stalls
    until its timeout in some runs (4 of 5 runs of the real-lockd peer TLS test failed that way)."""
    outcome, scenario = _server_side_upgrade_of_a_plain_dialler(tmp_path, free_port())
    asyncio.run(scenario())
    assert outcome == ["refused: SSLError"]
