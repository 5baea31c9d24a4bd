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

Optional mutual TLS (``PeerTlsContexts``): the dialling side verifies the peer's certificate
against the CA and that it names the peer's node id; the listening side requires a certificate
from the same CA that names some member. A refused link (plain TCP against TLS, an untrusted or
misnamed certificate) is logged once per peer each time the reason changes, not on every retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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
REFUSED_WITHIN_SECONDS = 1.0
"""An outbound connection the peer closes sooner than this was refused, not lost: a TLS port
drops a plain dialler, and under TLS 1.3 a server rejects the client's certificate only after the
client's handshake is done. Reconnects then keep backing off instead of retrying at once."""
UNTRUSTED_ISSUER_CODES = frozenset({2, 19, 20, 21})
"""OpenSSL X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, _SELF_SIGNED_CERT_IN_CHAIN,
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_VERIFY_LEAF_SIGNATURE: another CA signed it."""
TLS_HANDSHAKE_RECORD = b"\x16"
"""First byte of a TLS ClientHello: what a plain peer port sees when a TLS peer dials it."""


class _HandshakeRefused(Exception):
    """An outbound TLS handshake failed; the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class PeerTlsContexts:
    """Mutual TLS on the peer links: ``server`` accepts inbound links (it must require client
    certificates), ``client`` dials out (it must verify the peer and check its name)."""

    server: ssl.SSLContext
    client: ssl.SSLContext


class _HeldStreamProtocol(asyncio.StreamReaderProtocol):
    """Leaves incoming bytes in the kernel until the TLS upgrade starts: on Python 3.11
    ``StreamWriter.start_tls`` would lose a ClientHello the plain stream had already read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        super().connection_made(transport)


def describe_tls_error(error: BaseException) -> str:
    """A one-line reason with the setting to check, for a failed peer handshake."""
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or str(error)
        if "Hostname mismatch" in detail or "not valid for" in detail:
            return (
                f"certificate verify failed: {detail}; the certificate must name the node id "
                "in a DNS subjectAltName"
            )
        if error.verify_code in UNTRUSTED_ISSUER_CODES:
            return (
                f"certificate verify failed: {detail}: the certificate is not signed by the CA "
                "in this node's peer_tls.ca"
            )
        return f"certificate verify failed: {detail}; check peer_tls.ca"
    if isinstance(error, ssl.SSLError):
        reason = error.reason or str(error)
        if reason in {"WRONG_VERSION_NUMBER", "HTTP_REQUEST"}:
            return f"TLS handshake failed ({reason}): the peer speaks plain TCP; use peer_tls there"
        if reason == "UNEXPECTED_EOF_WHILE_READING":
            return (
                f"TLS handshake failed ({reason}): the peer hung up; it may not use peer_tls, or "
                "not trust this node's certificate (its log says why)"
            )
        return f"TLS handshake failed: {reason}"
    if isinstance(error, ConnectionError | asyncio.IncompleteReadError):
        return (
            "TLS handshake failed: the peer hung up; it may not use peer_tls, or not trust this "
            "node's certificate (its log says why)"
        )
    return f"TLS handshake failed: {error}"


def certificate_dns_names(peercert: object) -> set[str]:
    """The DNS subjectAltNames of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    if not isinstance(peercert, dict):
        return set()
    return {str(value) for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"}


def _host_of(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


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
        tls: PeerTlsContexts | None = None,
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
        self._tls = tls
        self._link_problems: dict[object, str] = {}
        """Last reported reason a link was refused, by peer id (outbound) or remote host
        (inbound): a reason is logged when it changes, not on every reconnect."""

    async def start(self) -> None:
        host, port = self._address
        if self._tls is None:
            self._server = await asyncio.start_server(self._serve_inbound, host, port)
        else:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _HeldStreamProtocol(asyncio.StreamReader(), self._serve_inbound, loop=loop),
                host,
                port,
            )
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

    def _link_refused(
        self, key: object, what: str, problem: str, *, level: int = logging.WARNING
    ) -> None:
        if self._link_problems.get(key) != problem:
            self._link_problems[key] = problem
            logger.log(level, "%s: %s: %s", self._node_id, what, problem)

    def _link_accepted(self, key: object, what: str) -> None:
        if self._link_problems.pop(key, None) is not None:
            logger.info("%s: %s: accepted again", self._node_id, what)

    async def _connect(
        self, peer: NodeId, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP, then (with TLS) the handshake as a separate step, so that an unreachable peer
        (routine: it is down) is told apart from a refused handshake (a configuration error)."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # that races with the connect completing, and stop() would wait forever.
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection(host, port)
        if self._tls is None:
            return reader, writer
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_SECONDS):
                await writer.start_tls(self._tls.client, server_hostname=peer)
        except TimeoutError:
            writer.close()
            raise  # a paused or overloaded peer: unreachable for now, not a refusal
        except (OSError, asyncio.IncompleteReadError) as error:
            writer.close()
            self._metrics.tls_handshake_failures += 1
            raise _HandshakeRefused(describe_tls_error(error)) from error
        return reader, writer

    async def _send_loop(self, peer: NodeId) -> None:
        host, port = self._peers[peer]
        queue = self._queues[peer]
        delay = RECONNECT_MIN_SECONDS
        what = f"{peer} at {host}:{port}"
        while not self._closing:
            try:
                reader, writer = await self._connect(peer, host, port)
            except _HandshakeRefused as refused:
                self._link_refused(peer, what, str(refused))
                self._discard_stale(queue)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            except (OSError, TimeoutError) as error:
                logger.debug(
                    "%s: cannot reach %s at %s:%d: %s", self._node_id, peer, host, port, error
                )
                self._discard_stale(queue)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            opened = asyncio.get_running_loop().time()
            ended = "closed by the peer"
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
            except (OSError, ConnectionError) as error:
                ended = f"lost: {error}"
            finally:
                self._writers.pop(peer, None)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            if asyncio.get_running_loop().time() - opened >= REFUSED_WITHIN_SECONDS:
                logger.info("%s: connection to %s %s", self._node_id, peer, ended)
                delay = RECONNECT_MIN_SECONDS
                self._link_accepted(peer, what)
                continue
            if self._tls is None:
                # Also what a link proxy does while the peer behind it is down: not a warning.
                self._link_refused(
                    peer,
                    what,
                    "closed the connection at once; if it uses peer_tls, this node must too",
                    level=logging.INFO,
                )
            else:
                self._link_refused(
                    peer,
                    what,
                    "closed the TLS connection at once: it may not trust this node's "
                    "certificate (its log says why; check peer_tls.ca on both)",
                )
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    @staticmethod
    def _discard_stale(queue: asyncio.Queue[Message]) -> None:
        """Messages for a peer we cannot reach are stale by the time it is back; Raft resends."""
        while not queue.empty():
            queue.get_nowait()

    async def _accept_tls(self, peer: object, writer: asyncio.StreamWriter) -> bool:
        """Upgrades an inbound link; False, after reporting why, if the handshake fails or the
        certificate names no member (a client certificate from the same CA is not a peer)."""
        assert self._tls is not None
        host = _host_of(peer)
        key, what = ("inbound", host), f"inbound peer link from {host}"
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_SECONDS):
                await writer.start_tls(self._tls.server)
        except TimeoutError:
            logger.debug("%s: %s: TLS handshake timed out", self._node_id, what)
            return False
        except (OSError, asyncio.IncompleteReadError) as error:
            self._metrics.tls_handshake_failures += 1
            self._link_refused(key, what, describe_tls_error(error))
            return False
        names = certificate_dns_names(writer.get_extra_info("peercert"))
        if not names & set(self._peers):
            self._metrics.tls_handshake_failures += 1
            self._link_refused(
                key,
                what,
                f"its certificate names {sorted(names) or 'no DNS subjectAltName'}, no member "
                f"of this cluster ({', '.join(sorted(self._peers))})",
            )
            return False
        self._link_accepted(key, f"{what} ({', '.join(sorted(names))})")
        return True

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        peer = writer.get_extra_info("peername")
        try:
            if self._tls is not None and not await self._accept_tls(peer, writer):
                return
            magic = await asyncio.wait_for(
                reader.readexactly(len(PEER_MAGIC)), HANDSHAKE_TIMEOUT_SECONDS
            )
            if magic != PEER_MAGIC:
                if magic.startswith(TLS_HANDSHAKE_RECORD):
                    self._metrics.tls_handshake_failures += 1
                    self._link_refused(
                        ("inbound", _host_of(peer)),
                        f"inbound peer link from {_host_of(peer)}",
                        "a TLS handshake on this plain peer port: the peer uses peer_tls; "
                        "turn it on here too (or off there)",
                    )
                    return
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
