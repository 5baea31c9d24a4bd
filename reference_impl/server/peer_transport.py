"""Raft messages between replicas over TCP: length-prefixed, CRC-checked frames.

One outbound connection per peer, re-established with exponential backoff. While it is up,
``send_all`` encodes a Ready's messages and writes each peer's frames with one ``write`` on the
spot (no task hand-off, one syscall per peer per Ready); while it is down they wait in a bounded
queue. Raft tolerates loss, so a full queue or a peer that stops reading drops messages instead of
growing memory without bound.
Inbound connections are read frame by frame; a malformed frame is logged and the connection
dropped, never raised into the node.

Frame: ``u32 length | u32 crc32(payload) | payload``, payload = codec.encode_message(msg). A
connection opens with ``PEER_MAGIC`` so a stray client is told apart from a corrupted stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence

from reference_impl.raft.codec import decode_message, encode_message
from reference_impl.raft.errors import RaftProtocolError
from reference_impl.raft.limits import MAX_MESSAGE_BYTES
from reference_impl.raft.metrics import ReplicaMetrics
from reference_impl.raft.types import Message, NodeId

logger = logging.getLogger(__name__)

PEER_MAGIC = b"LBRAFT1\n"
FRAME_HEADER = struct.Struct(">II")
DEFAULT_QUEUE_SIZE = 4096
"""Messages waiting for one peer; at 4096 a peer that is gone costs at most a few MiB."""
MAX_BUFFERED_BYTES = 2 << 20
"""Unsent bytes (beyond the kernel's socket buffer) to one connected peer after which new
messages are dropped: it is not reading (paused or overloaded), what waits is going stale, and
Raft resends what it needs once the peer answers again. The check is made before each write, so a
single large append or snapshot still goes out whole."""
RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0
HANDSHAKE_TIMEOUT_SECONDS = 5.0


def encode_frame(payload: bytes) -> bytes:
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class PeerTransport:
    """Sends messages to peers and hands received ones to ``on_message``."""

    def __init__(
        self,
        node_id: NodeId,
        peers: Mapping[NodeId, tuple[str, int]],
        on_message: Callable[[Message], None],
        metrics: ReplicaMetrics,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self._node_id = node_id
        self._address = peers[node_id]
        self._peers = {peer: address for peer, address in peers.items() if peer != node_id}
        self._on_message = on_message
        self._metrics = metrics
        self._queues: dict[NodeId, asyncio.Queue[Message]] = {
            peer: asyncio.Queue(queue_size) for peer in self._peers
        }
        self._writers: dict[NodeId, asyncio.StreamWriter] = {}
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inbound: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._closing = False

    async def start(self) -> None:
        host, port = self._address
        self._server = await asyncio.start_server(self._serve_inbound, host, port)
        for peer in self._peers:
            self._tasks.append(asyncio.create_task(self._send_loop(peer), name=f"send-{peer}"))

    async def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = [*self._tasks, *self._inbound]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:
                logger.error("%s: transport task %s did not stop", self._node_id, task)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._tasks = []

    def connected_peers(self) -> set[NodeId]:
        """Peers with an open outbound connection (their messages are written at once)."""
        return set(self._writers)

    def send(self, msg: Message) -> None:
        self.send_all((msg,))

    def send_all(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` in order; each connected peer's share goes out in one write."""
        if not messages:
            return
        frames: dict[NodeId, list[bytes]] = {}
        for msg in messages:
            queue = self._queues.get(msg.dst)
            if queue is None:
                logger.error(
                    "%s: no peer %r to send %s to", self._node_id, msg.dst, type(msg).__name__
                )
                continue
            if msg.dst not in self._writers:
                try:
                    queue.put_nowait(msg)
                except asyncio.QueueFull:
                    self._metrics.messages_dropped += 1
                continue
            try:
                frames.setdefault(msg.dst, []).append(encode_frame(encode_message(msg)))
            except RaftProtocolError as error:
                logger.error("%s: cannot encode %r: %s", self._node_id, msg, error)
        for peer, peer_frames in frames.items():
            self._write(peer, self._writers[peer], peer_frames)

    def _write(self, peer: NodeId, writer: asyncio.StreamWriter, frames: list[bytes]) -> None:
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self._metrics.messages_dropped += len(frames)
            return
        writer.write(b"".join(frames))
        self._metrics.messages_sent += len(frames)

    # -----------------------------------------------------------------------------------------

    async def _send_loop(self, peer: NodeId) -> None:
        host, port = self._peers[peer]
        queue = self._queues[peer]
        delay = RECONNECT_MIN_SECONDS
        while not self._closing:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races with the connect completing, and stop() would wait forever.
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as error:
                logger.debug(
                    "%s: cannot reach %s at %s:%d: %s", self._node_id, peer, host, port, error
                )
                self._discard_stale(queue)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = RECONNECT_MIN_SECONDS
            try:
                writer.write(PEER_MAGIC)
                queued = []
                while not queue.empty():
                    queued.append(queue.get_nowait())
                self._writers[peer] = writer
                self.send_all(queued)
                # The peer never writes on this connection: a read returns only at its close.
                while await reader.read(4096):
                    pass
                logger.info("%s: connection to %s closed by the peer", self._node_id, peer)
            except (OSError, ConnectionError) as error:
                logger.info("%s: connection to %s lost: %s", self._node_id, peer, error)
            finally:
                self._writers.pop(peer, None)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    @staticmethod
    def _discard_stale(queue: asyncio.Queue[Message]) -> None:
        """Messages for a peer we cannot reach are stale by the time it is back; Raft resends."""
        while not queue.empty():
            queue.get_nowait()

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        peer = writer.get_extra_info("peername")
        try:
            magic = await asyncio.wait_for(
                reader.readexactly(len(PEER_MAGIC)), HANDSHAKE_TIMEOUT_SECONDS
            )
            if magic != PEER_MAGIC:
                raise RaftProtocolError(f"bad connection preamble {magic!r}")
            while True:
                header = await reader.readexactly(FRAME_HEADER.size)
                length, crc = FRAME_HEADER.unpack(header)
                if length > MAX_MESSAGE_BYTES:
                    raise RaftProtocolError(f"frame of {length} bytes exceeds MAX_MESSAGE_BYTES")
                payload = await reader.readexactly(length)
                if zlib.crc32(payload) != crc:
                    raise RaftProtocolError("frame CRC mismatch")
                msg = decode_message(payload)
                self._metrics.messages_received += 1
                self._on_message(msg)
        except RaftProtocolError as error:
            self._metrics.malformed_frames += 1
            logger.warning(
                "%s: malformed data from %s, dropping the connection: %s",
                self._node_id,
                peer,
                error,
            )
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
            pass
        except asyncio.CancelledError:
            # stop() cancels us; returning normally keeps asyncio's stream callback from
            # logging the cancellation as an error (it calls task.exception()).
            pass
        finally:
            writer.close()
            if task is not None:
                self._inbound.discard(task)
