"""At least 10,000 random and mutated frames at a live lockd, which keeps serving afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import struct
import urllib.request
from collections.abc import Callable

import pytest

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.server.local_cluster import LocalCluster
from reference_impl.service.protocol import MAX_FRAME_BYTES, REQUEST_SCHEMAS, FrameDecoder

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

FRAMES = int(os.environ.get("LOCKBENCH_FUZZ_FRAMES", "10000"))
SEED = int(os.environ.get("LOCKBENCH_SEED", "4"))

JUNK_VALUES: list[object] = [
    None, True, -1, 0, 2**64, 1.5, float("1e308"), "", "x" * 300, "\u0000", "\ud800",
    [], {}, {"a": [1, {"b": None}]}, "s1", "n1", "../../etc", "@election/x", "a/b",
]  # fmt: skip


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _valid_request(rng: random.Random) -> dict[str, object]:
    op = rng.choice(sorted(REQUEST_SCHEMAS))
    args: dict[str, object] = {}
    for key in REQUEST_SCHEMAS[op]:
        if key in ("seq", "token", "from_revision"):
            args[key] = rng.randint(1, 1000)
        elif key == "ttl":
            args[key] = rng.choice([1.0, 2.0])
        elif key == "timeout":
            args[key] = 0
        elif key == "shared":
            args[key] = rng.random() < 0.5
        else:
            args[key] = rng.choice(["fuzz/a", "fuzz/b", "s1", "s2", "c1"])
    return {"id": rng.randint(1, 10**6), "op": op, "args": args}


def _mutate(rng: random.Random, request: dict[str, object]) -> dict[str, object]:
    mutated: dict[str, object] = json.loads(json.dumps(request))
    choice = rng.randrange(5)
    args = mutated.get("args")
    if choice == 0:
        mutated["op"] = rng.choice(["", "acquire ", "ACQUIRE", "__class__", "x" * 100, 7])
    elif choice == 1 and isinstance(args, dict) and args:
        args[rng.choice(sorted(args))] = rng.choice(JUNK_VALUES)
    elif choice == 2:
        mutated["id"] = rng.choice(JUNK_VALUES)
    elif choice == 3 and isinstance(args, dict):
        args[rng.choice(["evil", "__proto__", "op"])] = rng.choice(JUNK_VALUES)
    else:
        mutated["args"] = rng.choice(JUNK_VALUES)
    return mutated


def _random_frame(rng: random.Random) -> tuple[bytes, bool]:
    """One frame, and whether it may break framing (then it is the connection's last)."""
    kind = rng.random()
    if kind < 0.55:
        return _frame(json.dumps(_mutate(rng, _valid_request(rng))).encode()), False
    if kind < 0.65:
        return _frame(json.dumps(_valid_request(rng)).encode()), False
    if kind < 0.75:
        raw = bytearray(json.dumps(_valid_request(rng)).encode())
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return _frame(bytes(raw)), True
    if kind < 0.85:
        return _frame(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))), True
    if kind < 0.9:
        return _frame(json.dumps(rng.choice(JUNK_VALUES)).encode()), True
    if kind < 0.95:
        return struct.pack(">I", rng.choice([0, MAX_FRAME_BYTES + 1, 2**32 - 1])) + b"{}", True
    return struct.pack(">I", 100) + b'{"id": 1, "op"', True  # truncated, then EOF


async def _throw(host: str, port: int, rng: random.Random, count: int) -> tuple[int, int]:
    """Send ``count`` frames over as many connections as it takes; returns (sent, replies)."""
    sent = replies = 0
    while sent < count:
        decoder = FrameDecoder()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while sent < count:
                frame, may_break = _random_frame(rng)
                writer.write(frame)
                sent += 1
                if may_break:
                    break
            writer.write_eof()
            await writer.drain()
            while data := await asyncio.wait_for(reader.read(65536), 5.0):
                replies += len(decoder.feed(data))  # until the server closes the connection
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
    return sent, replies


def test_ten_thousand_bad_frames_leave_the_cluster_serving(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(size=3)
    leader = cluster.start_all()
    rng = random.Random(SEED)
    targets = [cluster.node(leader), *[n for n in cluster.nodes if n.id != leader][:1]]

    async def scenario() -> tuple[int, int]:
        per_target = FRAMES // len(targets) + 1
        sent = await asyncio.gather(
            *[
                _throw(n.host, n.client_port, random.Random(rng.random()), per_target)
                for n in targets
            ]
        )
        client = await AsyncLockClient.connect(cluster.endpoints, ttl=5.0)
        try:
            lease = await client.acquire("after/fuzz", timeout=5.0)
            for endpoint in cluster.endpoints:
                owner = await client.owner("after/fuzz", endpoint=endpoint)
                assert owner.token == lease.token
            await client.release("after/fuzz")
        finally:
            await client.close()
        return sum(s for s, _ in sent), sum(r for _, r in sent)

    sent, replies = asyncio.run(scenario())
    assert sent >= FRAMES
    # Every frame is answered except those cut off by a connection's truncated last frame.
    assert replies >= sent * 9 // 10, f"only {replies} replies to {sent} frames"
    print(f"fuzz: {sent} frames, {replies} replies")
    assert all(cluster.alive(n.id) for n in cluster.nodes), cluster.logs()
    for node in targets:
        with urllib.request.urlopen(f"http://{node.host}:{node.http_port}/metrics") as response:
            metrics = response.read().decode()
        assert not re.search(r'result="internal"', metrics), "a fuzz frame caused an internal error"
        protocol_errors = re.search(r"^lockd_protocol_errors_total (\d+)", metrics, re.M)
        assert protocol_errors
        assert int(protocol_errors.group(1)) > 0
    assert "Traceback" not in cluster.logs()
