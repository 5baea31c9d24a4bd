"""A group of real ``Replica`` shells (asyncio, TCP on loopback, WAL on disk) around a state
machine that does nothing, so a benchmark measures replication alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from reference_impl.server.peer_transport import PeerTlsContexts
from reference_impl.server.replica import Replica

LEADER_TIMEOUT_SECONDS = 10.0


class NullMachine:
    """Applies nothing and snapshots to nothing: the cost left is Raft's own."""

    def apply(self, index: int, data: bytes) -> int:
        return index

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes, index: int) -> None:
        return None


@asynccontextmanager
async def replica_group(
    directory: Path,
    node_ids: Sequence[str],
    base_port: int,
    *,
    peer_tls: dict[str, PeerTlsContexts] | None = None,
) -> AsyncIterator[Replica]:
    """Start one Replica per node id (ports ``base_port``, +1, ...), yield the elected leader,
    stop them all on exit."""
    peers = {node_id: ("127.0.0.1", base_port + i) for i, node_id in enumerate(node_ids)}
    replicas = [
        Replica(
            node_id,
            peers,
            directory / node_id,
            NullMachine(),
            peer_tls=peer_tls[node_id] if peer_tls else None,
        )
        for node_id in node_ids
    ]
    try:
        for replica in replicas:
            await replica.start()
        deadline = time.monotonic() + LEADER_TIMEOUT_SECONDS
        while not any(r.is_leader for r in replicas):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader within {LEADER_TIMEOUT_SECONDS:g} s")
            await asyncio.sleep(0.02)
        yield next(r for r in replicas if r.is_leader)
    finally:
        for replica in replicas:
            await replica.stop()


async def propose_load(
    leader: Replica, concurrency: int, total: int, seconds: float
) -> tuple[list[float], float]:
    """``concurrency`` proposers sharing ``total`` proposals, stopping after ``seconds``:
    (each proposal's latency in s, wall seconds)."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    per_worker = total // concurrency

    async def worker(worker_id: int) -> None:
        for i in range(per_worker):
            if time.monotonic() > stop_at:
                return
            begun = time.perf_counter()
            await leader.propose(b"w%d-%d" % (worker_id, i), timeout=5)
            latencies.append(time.perf_counter() - begun)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, time.perf_counter() - started
