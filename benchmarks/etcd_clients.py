"""The two Python paths to etcd's lock API, measured side by side (docs/backends.md quotes this).

Path ``gateway``: etcd's JSON gateway over HTTP/1.1 (``/v3/lease/grant``, ``/v3/lock/lock``,
``/v3/lock/unlock``; base64 names, int64 as strings) with aiohttp's keep-alive pool. Path
``grpc``: gRPC through aetcd's channel and stubs plus the v3lock service
(bench.backends.etcd_v3lock). Both do the same work per pair: Lock(name, lease), Unlock(key), each
client on its own lock (uncontended) and with its own lease granted first.

A five-member etcd (Debian's etcd-server) is started on the local runtime (127.0.0.1, ports 2379
+ offsets, no root needed) with the bench's own backend, and stopped at the end. Rounds
alternate the two paths, so load from other work on the machine hits both alike; the figures are
medians over the rounds. Needs aiohttp (``pip install aiohttp``), which lockbench itself does not.

    .venv/bin/python -m benchmarks.etcd_clients --clients 1,8,32 --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aetcd
from aetcd import rpc

from bench.backends.etcd import EtcdBackend, client_port
from bench.backends.etcd_v3lock import LockRequest, LockStub, UnlockRequest
from bench.cluster import open_cluster
from bench.cluster.local import local_down, local_up
from lockbench.parallel import on_each_node

LEASE_TTL_S = 30
LEADER_TIMEOUT_S = 30.0

Pair = Callable[[], Awaitable[None]]


async def gateway_client(endpoint: str, name: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(f"http://{endpoint}")

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(path, json=body) as response:
            answer: dict[str, Any] = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {answer}")
            return answer

    lease = (await post("/v3/lease/grant", {"TTL": LEASE_TTL_S}))["ID"]
    encoded = base64.b64encode(name.encode()).decode()

    async def pair() -> None:
        key = (await post("/v3/lock/lock", {"name": encoded, "lease": lease}))["key"]
        await post("/v3/lock/unlock", {"key": key})

    async def close() -> None:
        await post("/v3/lease/revoke", {"ID": lease})
        await session.close()

    return pair, close


async def grpc_client(endpoint: str, name: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    host, port = endpoint.rsplit(":", 1)
    client = aetcd.Client(host=host, port=int(port))
    await client.connect()
    lock_stub = LockStub(client.channel)
    lease = (await client.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=LEASE_TTL_S))).ID

    async def pair() -> None:
        response = await lock_stub.Lock(LockRequest(name=name.encode(), lease=lease))
        await lock_stub.Unlock(UnlockRequest(key=response.key))

    async def close() -> None:
        await client.leasestub.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease))
        await client.close()

    return pair, close


PATHS = {"gateway": gateway_client, "grpc": grpc_client}


async def measure(path: str, endpoints: list[str], clients: int, seconds: float) -> float:
    """Acquire+release pairs per second with ``clients`` concurrent clients on one path."""
    opened = [
        await PATHS[path](endpoints[i % len(endpoints)], f"bench/{path}/{i}")
        for i in range(clients)
    ]
    for pair, _ in opened:  # warm up every connection
        await pair()
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(pair: Pair) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await pair()
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(pair) for pair, _ in opened))
    elapsed = time.monotonic() - started
    for _, close in opened:
        await close()
    return done / elapsed


def wait_for_leader(backend: EtcdBackend, cluster: Any) -> str:
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    while time.monotonic() < deadline:
        leader = backend.leader(cluster)
        if leader is not None:
            return leader
        time.sleep(0.2)
    raise SystemExit("etcd elected no leader")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-offset", type=int, default=600, help="port offset of node n1")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="lockbench-etcd-clients-") as tmp:
        inventory = local_up(Path(tmp) / "cluster", base_offset=args.base_offset)
        try:
            with open_cluster(inventory) as cluster:
                backend = EtcdBackend()
                backend.deploy(cluster)
                on_each_node("start", cluster.nodes, backend.start)
                leader = wait_for_leader(backend, cluster)
                # every client talks to the leader (no forwarding hop): the paths' own costs
                node = cluster.node(leader)
                endpoints = [f"{node.address}:{client_port(node)}"]
                results: dict[tuple[str, int], list[float]] = {}
                for round_ in range(args.rounds):
                    for clients in counts:
                        for path in PATHS if round_ % 2 == 0 else reversed(list(PATHS)):
                            rate = asyncio.run(measure(path, endpoints, clients, args.seconds))
                            results.setdefault((path, clients), []).append(rate)
                            print(f"round {round_ + 1}: {path:8} {clients:3} clients {rate:8.0f}")
                on_each_node("stop", cluster.nodes, backend.stop)
        finally:
            local_down(Path(tmp) / "cluster")
    print("\nmedian acquire+release pairs/s (leader endpoint)")
    print(f"{'clients':>8} {'gateway':>9} {'grpc':>9} {'grpc/gateway':>13}")
    for clients in counts:
        gateway = statistics.median(results[("gateway", clients)])
        grpc = statistics.median(results[("grpc", clients)])
        print(f"{clients:8} {gateway:9.0f} {grpc:9.0f} {grpc / gateway:13.2f}")


if __name__ == "__main__":
    main()
