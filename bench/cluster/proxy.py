"""A fault-injecting TCP proxy for the peer links of a local cluster (standard library only).

The local runtime's nodes share one loopback, so iptables cannot cut them apart. Instead every
directed peer link ``src -> dst`` gets its own listening port here, and ``src``'s lockd is told to
reach ``dst`` through it (``bench.backends.reference`` writes the per-node member tables). Faults
are set live through a JSON-lines control port (``bench.cluster.link_faults`` is the client).

What a fault means on a TCP stream (bytes are never dropped or altered, only held back):

- ``blocked`` is an iptables DROP: bytes sent from ``src`` to ``dst`` stop moving (the proxy holds
  what it has and stops reading, so the sender's buffers fill), and new connections from ``src``
  to ``dst`` hang (the listener stops accepting and shrinks its accept queue, so the kernel drops
  further SYNs) instead of being refused. Healing delivers what was held, as TCP retransmission
  would after a short partition.
- ``delay_ms`` / ``jitter_ms`` hold each chunk read from ``src`` for ``delay +- jitter`` before it
  is written to ``dst``; chunks never overtake each other (a TCP stream stays in order).
- ``loss`` is what packet loss does to TCP: the chunk is retransmitted, i.e. it arrives one
  retransmission timeout late (200 ms, Linux's minimum RTO, doubling if "lost" again), and
  everything behind it waits (head-of-line blocking). Dropping bytes instead would corrupt the
  frame stream, which no real network does to a TCP connection.

A link's fault applies to the bytes moving from ``src`` to ``dst`` in any connection: the
forward direction of the connections on link ``src -> dst`` and the reply direction of
connections on link ``dst -> src``. A symmetric partition therefore stalls both directions of
every connection between the two sides; a one-way block (``b -> a`` only) silences ``b`` for
``a`` while ``a`` is still heard by ``b``. (iptables on a TCP connection cannot do that cleanly:
the dropped ACKs stall the other direction too.)

Run as ``python3 -I proxy.py --config FILE`` (``-I``: nothing but the standard library on the
path); it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("linkproxy")

CHUNK_BYTES = 64 * 1024
"""One read from a socket; a delayed or held unit of the stream."""
QUEUE_CHUNKS = 64
"""Chunks in flight per direction (4 MiB at most): beyond that the proxy stops reading, so a
slow or blocked link pushes back on the sender like a full TCP window."""
LISTEN_BACKLOG = 128
BLOCKED_BACKLOG = 0
"""While a link is blocked its listener is not accepted from and its queue is shrunk to this, so
the kernel drops further SYNs and a connect hangs, as under an iptables DROP."""
RETRANSMIT_TIMEOUT_S = 0.2
"""Linux's TCP_RTO_MIN: how late a "lost" chunk arrives; doubles per repeated loss."""
MAX_RETRANSMISSIONS = 6
MAX_DELAY_MS = 60_000.0
CONNECT_TIMEOUT_S = 2.0
ACCEPT_RETRY_S = 0.1
MAX_CONTROL_LINE_BYTES = 1 << 20


class ProxyError(ValueError):
    """A proxy configuration or control request that cannot be applied; says what to change."""


@dataclass(frozen=True, slots=True, order=True)
class Link:
    """The direction ``src -> dst``: the connections ``src`` opens to ``dst`` and its bytes."""

    src: str
    dst: str

    @property
    def reverse(self) -> Link:
        return Link(self.dst, self.src)

    def __str__(self) -> str:
        return f"{self.src}->{self.dst}"


@dataclass(frozen=True, slots=True)
class LinkFault:
    """The fault on one directed link; the default is a healthy link."""

    blocked: bool = False
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ProxyError(f"delay_ms must be within 0..{MAX_DELAY_MS:g}, not {self.delay_ms}")
        if not 0.0 <= self.jitter_ms <= MAX_DELAY_MS:
            raise ProxyError(f"jitter_ms must be within 0..{MAX_DELAY_MS:g}, not {self.jitter_ms}")
        if not 0.0 <= self.loss < 1.0:
            raise ProxyError(f"loss must be a fraction in [0, 1), not {self.loss}")

    @property
    def healthy(self) -> bool:
        return self == LinkFault()

    def chunk_delay_s(self, rng: random.Random) -> float:
        """How long to hold one chunk: delay, uniform jitter, and a retransmission if "lost"."""
        delay_ms = self.delay_ms
        if self.jitter_ms:
            delay_ms = max(0.0, delay_ms + rng.uniform(-self.jitter_ms, self.jitter_ms))
        seconds = delay_ms / 1000.0
        timeout = RETRANSMIT_TIMEOUT_S
        for _ in range(MAX_RETRANSMISSIONS):
            if not self.loss or rng.random() >= self.loss:
                break
            seconds += timeout
            timeout *= 2
        return seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "blocked": self.blocked,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "loss": self.loss,
        }


@dataclass(frozen=True, slots=True)
class Route:
    """Link ``link`` listens on ``listen_port`` and forwards to ``dst``'s real peer port."""

    link: Link
    listen_port: int
    target_host: str
    target_port: int


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What the proxy process serves: its address, control port and one route per link."""

    host: str
    control_port: int
    routes: tuple[Route, ...]

    def __post_init__(self) -> None:
        ports = [self.control_port, *(r.listen_port for r in self.routes)]
        for port in ports:
            if not 1 <= port <= 65535:
                raise ProxyError(f"port {port} is outside 1..65535")
        if len(set(ports)) != len(ports):
            raise ProxyError(f"two routes (or a route and the control port) share a port: {ports}")
        links = [r.link for r in self.routes]
        if len(set(links)) != len(links):
            raise ProxyError("a link has two routes")

    def to_json(self) -> str:
        document = {
            "host": self.host,
            "control_port": self.control_port,
            "routes": [
                {
                    "src": r.link.src,
                    "dst": r.link.dst,
                    "listen_port": r.listen_port,
                    "target_host": r.target_host,
                    "target_port": r.target_port,
                }
                for r in self.routes
            ],
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> ProxyConfig:
        try:
            raw = json.loads(text)
            routes = tuple(
                Route(
                    Link(str(r["src"]), str(r["dst"])),
                    int(r["listen_port"]),
                    str(r["target_host"]),
                    int(r["target_port"]),
                )
                for r in raw["routes"]
            )
            return ProxyConfig(str(raw["host"]), int(raw["control_port"]), routes)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProxyError(f"bad proxy configuration: {exc!r}") from exc


# ------------------------------------------------------------------------------------------------
# The control protocol: one JSON object per line each way (sans-I/O: parse and validate here).

CONTROL_OPS = frozenset({"state", "block", "quality", "heal"})


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """``state``; ``block`` (exactly these links blocked, all others unblocked); ``quality`` (set
    delay/jitter/loss on these links, leaving ``blocked`` alone); ``heal`` (every link healthy)."""

    op: str
    links: tuple[Link, ...] = ()
    quality: LinkFault = field(default_factory=LinkFault)


def _links(raw: Any) -> tuple[Link, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str) for n in pair)
        for pair in raw
    ):
        raise ProxyError('"links" must be a list of [src, dst] name pairs')
    return tuple(Link(src, dst) for src, dst in raw)


def _number(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProxyError(f'"{key}" must be a number, not {value!r}')
    return float(value)


def parse_request(line: bytes) -> ControlRequest:
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise ProxyError(f"control request is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("op") not in CONTROL_OPS:
        raise ProxyError(f"control request needs an op among {sorted(CONTROL_OPS)}: {raw!r}")
    op = raw["op"]
    if op in ("state", "heal"):
        return ControlRequest(op)
    links = _links(raw.get("links"))
    if op == "block":
        return ControlRequest(op, links)
    quality = LinkFault(
        delay_ms=_number(raw, "delay_ms"),
        jitter_ms=_number(raw, "jitter_ms"),
        loss=_number(raw, "loss"),
    )
    return ControlRequest(op, links, quality)


def encode_request(request: ControlRequest) -> bytes:
    document: dict[str, Any] = {"op": request.op}
    if request.op in ("block", "quality"):
        document["links"] = [[link.src, link.dst] for link in request.links]
    if request.op == "quality":
        document.update(
            delay_ms=request.quality.delay_ms,
            jitter_ms=request.quality.jitter_ms,
            loss=request.quality.loss,
        )
    return json.dumps(document).encode() + b"\n"


# ------------------------------------------------------------------------------------------------
# The running proxy


class LinkChannel:
    """The live state of one direction: its fault, and events the pumps and listener wait on."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.fault = LinkFault()
        self.passable = asyncio.Event()
        self.passable.set()
        self.blocked = asyncio.Event()
        self.connections = 0
        self.bytes_delivered = 0
        self.listener: socket.socket | None = None

    def set_fault(self, fault: LinkFault) -> None:
        was_blocked = self.fault.blocked
        self.fault = fault
        if fault.blocked and not was_blocked:
            self.passable.clear()
            self.blocked.set()
            if self.listener is not None:
                self.listener.listen(BLOCKED_BACKLOG)
        elif was_blocked and not fault.blocked:
            self.blocked.clear()
            self.passable.set()
            if self.listener is not None:
                self.listener.listen(LISTEN_BACKLOG)

    def status(self) -> dict[str, Any]:
        return {
            "src": self.link.src,
            "dst": self.link.dst,
            **self.fault.as_dict(),
            "connections": self.connections,
            "bytes_delivered": self.bytes_delivered,
        }


class LinkProxy:
    """Serves every route of a ProxyConfig plus the control port, in one asyncio loop."""

    def __init__(self, config: ProxyConfig, *, seed: int | None = None) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.channels: dict[Link, LinkChannel] = {}
        for route in config.routes:
            for link in (route.link, route.link.reverse):
                self.channels.setdefault(link, LinkChannel(link))
        self._tasks: set[asyncio.Task[None]] = set()
        self._control: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind every port first (a taken port fails the start as a whole), then serve."""
        listeners: list[tuple[Route, socket.socket]] = []
        host = self.config.host
        try:
            for route in self.config.routes:
                listeners.append((route, _listen(host, route.listen_port, f"link {route.link}")))
            control = _listen(host, self.config.control_port, "control port")
            self._control = await asyncio.start_server(
                self._serve_control, sock=control, limit=MAX_CONTROL_LINE_BYTES
            )
        except ProxyError:
            for _, sock in listeners:
                sock.close()
            raise
        for route, sock in listeners:
            self.channels[route.link].listener = sock
            self._spawn(self._accept_loop(route, sock), f"accept {route.link}")
        log.info(
            "serving %d links on %s, control port %d",
            len(listeners),
            self.config.host,
            self.config.control_port,
        )

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in self.channels.values():
            if channel.listener is not None:
                channel.listener.close()

    def _spawn(self, coroutine: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- control --------------------------------------------------------------------------------

    def apply(self, request: ControlRequest) -> dict[str, Any]:
        """Apply one control request atomically (one event loop: no other change interleaves)."""
        unknown = [str(link) for link in request.links if link not in self.channels]
        if unknown:
            known = ", ".join(str(link) for link in sorted(self.channels))
            raise ProxyError(f"no such link(s) {', '.join(unknown)}; known: {known}")
        if request.op == "heal":
            for channel in self.channels.values():
                channel.set_fault(LinkFault())
        elif request.op == "block":
            wanted = set(request.links)
            for link, channel in self.channels.items():
                channel.set_fault(replace(channel.fault, blocked=link in wanted))
        elif request.op == "quality":
            for link in request.links:
                channel = self.channels[link]
                channel.set_fault(replace(request.quality, blocked=channel.fault.blocked))
        if request.op != "state":
            faulty = {
                str(link): channel.fault.as_dict()
                for link, channel in sorted(self.channels.items())
                if not channel.fault.healthy
            }
            log.info("%s: faulty links now %s", request.op, faulty)
        return {
            "ok": True,
            "links": [self.channels[link].status() for link in sorted(self.channels)],
        }

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    response = self.apply(parse_request(line))
                except ProxyError as exc:
                    response = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.warning("control connection dropped: %s", exc)
        finally:
            writer.close()

    # -- forwarding -----------------------------------------------------------------------------

    async def _accept_loop(self, route: Route, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        channel = self.channels[route.link]
        while True:
            await channel.passable.wait()
            accepting = asyncio.ensure_future(loop.sock_accept(sock))
            blocking = asyncio.ensure_future(channel.blocked.wait())
            try:
                await asyncio.wait({accepting, blocking}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                blocking.cancel()
                if not accepting.done():
                    accepting.cancel()
                    await asyncio.wait({accepting})  # it may have accepted meanwhile
            if accepting.cancelled():
                continue
            try:
                conn, _ = accepting.result()
            except OSError as exc:  # e.g. out of file descriptors: retry, do not die
                log.warning("%s: accept failed: %s", route.link, exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            self._spawn(self._forward(route, conn), f"connection {route.link}")

    async def _forward(self, route: Route, conn: socket.socket) -> None:
        channel = self.channels[route.link]
        channel.connections += 1
        try:
            client_reader, client_writer = await asyncio.open_connection(sock=conn)
        except OSError:
            conn.close()
            channel.connections -= 1
            return
        try:
            try:
                target_reader, target_writer = await asyncio.wait_for(
                    asyncio.open_connection(route.target_host, route.target_port),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError) as exc:
                # dst is down: the sender sees its connection close, as a refused connect.
                log.debug("%s: cannot reach %s: %s", route.link, route.target_port, exc)
                return
            reverse = self.channels[route.link.reverse]
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump(client_reader, target_writer, channel))
                    group.create_task(self._pump(target_reader, client_writer, reverse))
            except* (ConnectionError, OSError) as failures:
                log.debug("%s: connection ended: %s", route.link, failures.exceptions[0])
            finally:
                target_writer.close()
        finally:
            client_writer.close()
            channel.connections -= 1

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel: LinkChannel
    ) -> None:
        """Move one direction's bytes, each chunk held for its fault's delay and while blocked."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read_side() -> None:
            last_due = 0.0
            while True:
                await channel.passable.wait()
                data = await reader.read(CHUNK_BYTES)
                due = max(last_due, loop.time() + channel.fault.chunk_delay_s(self.rng))
                last_due = due
                await queue.put((due, data))
                if not data:
                    return

        async def write_side() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await channel.passable.wait()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                channel.bytes_delivered += len(data)

        async with asyncio.TaskGroup() as group:
            group.create_task(read_side())
            group.create_task(write_side())


def _listen(host: str, port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ProxyError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


async def serve(config: ProxyConfig, *, seed: int | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    proxy = LinkProxy(config, seed=seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await proxy.start()
    try:
        await stop.wait()
    finally:
        await proxy.stop()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fault-injecting TCP proxy for peer links")
    parser.add_argument("--config", required=True, type=Path, help="the routes (JSON)")
    parser.add_argument("--seed", type=int, default=None, help="seed for jitter and loss")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = ProxyConfig.from_json(args.config.read_text())
        asyncio.run(serve(config, seed=args.seed))
    except (OSError, ProxyError) as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
