"""The protected resource fences stale tokens (or not) and logs every access."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lockbench.protocols import DefiniteFailure
from tests.support.ports import free_port
from workloads.resource import RefusedAccess, ResourceClient, ResourceServer, ResourceState


def serve(mode: str, log_path: Path, scenario: Any) -> Any:
    async def main() -> Any:
        server = ResourceServer(mode, log_path)  # type: ignore[arg-type]
        await server.start("127.0.0.1", free_port())
        client = ResourceClient(*server.address)
        try:
            return await scenario(client)
        finally:
            await client.close()
            await server.stop()

    return asyncio.run(main())


def test_fenced_mode_refuses_a_token_lower_than_the_highest_accepted(tmp_path: Path) -> None:
    async def scenario(client: ResourceClient) -> dict[str, Any]:
        await client.request("write", "k", token=5, value="new", client="s2")
        with pytest.raises(RefusedAccess) as refused:
            await client.request("write", "k", token=4, value="stale", client="s1")
        final = await client.request("final-read", "k")
        assert final["value"] == "new"
        return refused.value.value

    refusal = serve("fenced", tmp_path / "resource.log", scenario)
    assert refusal["accepted"] is False
    assert refusal["highest"] == 5
    entries = [json.loads(line) for line in (tmp_path / "resource.log").read_text().splitlines()]
    assert [e["outcome"] for e in entries] == ["accepted", "refused", "read"]
    assert entries[1]["client"] == "s1"
    assert entries[1]["token"] == 4
    times = [e["resource_time"] for e in entries]
    assert times == sorted(times)


def test_unfenced_mode_accepts_the_stale_write(tmp_path: Path) -> None:
    async def scenario(client: ResourceClient) -> Any:
        await client.request("write", "k", token=5, value="new")
        await client.request("write", "k", token=4, value="stale")
        return (await client.request("final-read", "k"))["value"]

    assert serve("unfenced", tmp_path / "resource.log", scenario) == "stale"


def test_a_fenced_resource_refuses_an_access_without_a_token() -> None:
    state = ResourceState("fenced")
    response = state.handle({"op": "enter", "key": "k", "token": None})
    assert response == {
        "accepted": False,
        "resource_time": response["resource_time"],
        "highest": None,
        "reason": "missing-token",
    }


def test_a_malformed_request_gets_an_error_and_the_connection_survives(tmp_path: Path) -> None:
    async def scenario(client: ResourceClient) -> Any:
        with pytest.raises(DefiniteFailure, match="unknown op"):
            await client.request("delete", "k", token=1)
        return await client.request("read", "k", token=1)

    assert serve("fenced", tmp_path / "r.log", scenario)["value"] == 0
