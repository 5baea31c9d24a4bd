"""The peer transport on loopback (free ports): a Ready's messages reach every connected
peer in order through direct writes, a peer that went away is reconnected to, and messages for
a peer that cannot be reached are dropped (Raft resends) instead of piling up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from reference_impl.raft.metrics import ReplicaMetrics
from reference_impl.raft.types import AppendResponse, Message
from reference_impl.server.peer_transport import PeerTransport
from tests.support.ports import free_port_block

_BASE_PORT = free_port_block(4)
PEERS = {f"n{i}": ("127.0.0.1", _BASE_PORT + i) for i in (1, 2, 3)}


def ack(src: str, dst: str, index: int) -> AppendResponse:
    return AppendResponse(src, dst, 1, True, index)


class Inbox:
    """What one node received; every message these tests send is an AppendResponse."""

    def __init__(self) -> None:
        self.messages: list[AppendResponse] = []
        self.others: list[Message] = []

    def __call__(self, msg: Message) -> None:
        if isinstance(msg, AppendResponse):
            self.messages.append(msg)
        else:
            self.others.append(msg)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_a_readys_messages_reach_each_peer_in_order_and_after_a_reconnect() -> None:
    async def scenario() -> None:
        inboxes = {node: Inbox() for node in PEERS}
        metrics = {node: ReplicaMetrics() for node in PEERS}
        transports = {
            node: PeerTransport(node, PEERS, inboxes[node], metrics[node]) for node in PEERS
        }
        try:
            for transport in transports.values():
                await transport.start()
            sender = transports["n1"]
            # Retry until both outbound connections are up (sends before that may be dropped).
            await wait_until(lambda: sender.connected_peers() == {"n2", "n3"})
            ready = [ack("n1", dst, index) for index in range(1, 101) for dst in ("n2", "n3")]
            sender.send_all(ready)
            await wait_until(lambda: all(len(inboxes[n].messages) == 100 for n in ("n2", "n3")))
            for node in ("n2", "n3"):
                assert [m.index for m in inboxes[node].messages] == list(range(1, 101))
                assert all(m.src == "n1" and m.dst == node for m in inboxes[node].messages)
            assert metrics["n1"].messages_sent == 200
            assert metrics["n1"].messages_dropped == 0

            # n2 restarts: the sender notices the closed connection and reconnects.
            await transports["n2"].stop()
            await wait_until(lambda: sender.connected_peers() == {"n3"})
            transports["n2"] = PeerTransport("n2", PEERS, inboxes["n2"], metrics["n2"])
            await transports["n2"].start()
            await wait_until(lambda: sender.connected_peers() == {"n2", "n3"})
            sender.send_all([ack("n1", "n2", 101)])
            await wait_until(lambda: len(inboxes["n2"].messages) == 101)
            assert inboxes["n2"].messages[-1].index == 101
        finally:
            for transport in transports.values():
                await transport.stop()

    asyncio.run(scenario())


def test_messages_for_an_unreachable_peer_are_dropped_not_kept() -> None:
    async def scenario() -> None:
        inbox, metrics = Inbox(), ReplicaMetrics()
        sender = PeerTransport("n1", PEERS, inbox, metrics, queue_size=8)
        await sender.start()
        try:
            # Nobody listens for n2 or n3: the first 8 wait in n2's queue, the rest are dropped.
            sender.send_all([ack("n1", "n2", index) for index in range(1, 21)])
            assert metrics.messages_dropped == 12
            assert metrics.messages_sent == 0
            assert sender.connected_peers() == set()
        finally:
            await sender.stop()

    asyncio.run(scenario())
