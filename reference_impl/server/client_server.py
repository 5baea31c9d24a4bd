"""The client port: one asyncio task per connection, frames in, replies and watch events out.

Requests on one connection run concurrently (a blocked acquire does not hold up a keepalive);
replies carry the request id. A frame that breaks framing gets one ``protocol`` error reply (id 0)
and the connection is closed; a well-framed but bad request gets a ``bad-request`` reply and the
connection stays open. With an auth token configured, the first request must be ``hello`` with
the token, or the connection is refused with an ``auth`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import ssl
from collections.abc import Coroutine
from typing import Any

from reference_impl.server.metrics import Registry
from reference_impl.server.request_failed import RequestFailed
from reference_impl.server.service import LockService, PendingWrite
from reference_impl.server.watch_hub import Subscriber
from reference_impl.service.events import WatchEvent
from reference_impl.service.protocol import (
    E_AUTH,
    E_BAD_REQUEST,
    E_INTERNAL,
    E_PROTOCOL,
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    Request,
    encode_frame,
    error_response,
    ok_response,
    parse_request,
)

log = logging.getLogger(__name__)

READ_CHUNK = 65536
MAX_CONNECTION_BACKLOG_BYTES = 8 << 20  # a watcher that cannot keep up is disconnected
MAX_INFLIGHT_PER_CONNECTION = 1024
EOF_GRACE_SECONDS = 5.0  # how long a half-closed connection's in-flight requests may finish
_WRITE_OPS = frozenset({"acquire", "release"})


class ClientServer:
    def __init__(
        self,
        service: LockService,
        registry: Registry,
        *,
        auth_token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.auth_token = auth_token
        self.ssl_context = ssl_context
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.protocol_errors = registry.counter(
            "lockd_protocol_errors_total", "Frames that broke framing (connection closed)."
        )
        registry.gauge("lockd_client_connections", "Open client connections.", self._count)

    def _count(self) -> float:
        return float(self.connections)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=self.ssl_context, limit=READ_CHUNK
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.connections += 1
        connection = _Connection(self, writer)
        try:
            await connection.run(reader)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("client connection ended: %s", exc)
        finally:
            self.connections -= 1
            connection.close()
            if task is not None:
                self._handlers.discard(task)


class _Connection:
    def __init__(self, server: ClientServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.service = server.service
        self.writer = writer
        self.authenticated = server.auth_token is None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writes: set[asyncio.Future[Any]] = set()  # acquires/releases answered by callback
        self.watches: dict[int, Subscriber] = {}
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            frame = encode_frame(message)
        except ProtocolError:
            frame = encode_frame(
                error_response(message.get("id", 0), E_INTERNAL, "reply too large to send")
            )
        self.writer.write(frame)
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_CONNECTION_BACKLOG_BYTES:
            log.warning("client not reading; dropping its connection")
            self.close()

    async def run(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while not self.closed:
            data = await reader.read(READ_CHUNK)
            if not data:
                await self._finish_in_flight()  # half-closed by the client
                return
            try:
                for message in decoder.feed(data):
                    self._dispatch(message)
                if decoder.error is not None:
                    raise decoder.error
            except ProtocolError as exc:
                # Frames before the broken one were dispatched by feed(); answer them first.
                self.server.protocol_errors.inc()
                await self._finish_in_flight()
                self.send(error_response(0, E_PROTOCOL, str(exc)))
                await self._drain_quietly()
                return
            if self.writer.transport.get_write_buffer_size() > 0:
                await self._drain_quietly()

    async def _finish_in_flight(self) -> None:
        """Let requests already received finish (bounded) before the connection closes."""
        if self.tasks or self.writes:
            await asyncio.wait([*self.tasks, *self.writes], timeout=EOF_GRACE_SECONDS)
            await asyncio.sleep(0)  # let the writes' done callbacks send their replies
            if self.tasks:  # an acquire that was queued continues in a task
                await asyncio.wait(list(self.tasks), timeout=EOF_GRACE_SECONDS)
        await self._drain_quietly()

    async def _drain_quietly(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self.writer.drain(), 5.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        try:
            request = parse_request(message)
        except ProtocolError as exc:
            self.send(error_response(exc.request_id, E_BAD_REQUEST, str(exc)))
            return
        if request.op == "hello":
            self._hello(request)
            return
        if not self.authenticated:
            self.send(error_response(request.id, E_AUTH, "send hello with the auth token first"))
            self.close()
            return
        if request.op == "watch":
            self._watch(request)
            return
        if len(self.tasks) + len(self.writes) >= MAX_INFLIGHT_PER_CONNECTION:
            self.send(error_response(request.id, E_BAD_REQUEST, "too many requests in flight"))
            return
        if request.op in _WRITE_OPS and self._begin_write(request):
            return
        self._spawn(self._answer(request))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _begin_write(self, request: Request) -> bool:
        """Acquire and release without a task: propose now, answer from the proposal's done
        callback (a task per request measured ~10% of the leader's time). False: not taken."""
        try:
            pending = self.service.begin_write(request)
        except RequestFailed as exc:
            self._fail(request, exc)
            return True
        except Exception as exc:
            self._internal_error(request, exc)
            return True
        if pending is None:
            return False
        self.writes.add(pending.future)
        pending.future.add_done_callback(functools.partial(self._finish_write, request, pending))
        return True

    def _finish_write(
        self, request: Request, pending: PendingWrite, future: asyncio.Future[Any]
    ) -> None:
        self.writes.discard(future)
        if self.closed:
            return
        try:
            result = self.service.finish_write(pending)
        except RequestFailed as exc:
            self._fail(request, exc)
            return
        except Exception as exc:
            self._internal_error(request, exc)
            return
        if result is None:  # queued behind another holder: wait for the grant in a task
            waiting = self.service.wait_for_grant(pending, request.args.get("timeout"))
            self._spawn(self._reply_when_done(request, waiting))
            return
        self._succeed(request, result)

    async def _reply_when_done(
        self, request: Request, work: Coroutine[Any, Any, dict[str, Any]]
    ) -> None:
        try:
            result = await work
        except RequestFailed as exc:
            self._fail(request, exc)
            return
        except Exception as exc:
            self._internal_error(request, exc)
            return
        self._succeed(request, result)

    def _succeed(self, request: Request, result: dict[str, Any]) -> None:
        self.service.requests.inc(request.op, "ok")
        self.send(ok_response(request.id, result))

    def _fail(self, request: Request, exc: RequestFailed) -> None:
        self.service.requests.inc(request.op, exc.code)
        self.send(error_response(request.id, exc.code, exc.message, leader=exc.leader))

    def _internal_error(self, request: Request, exc: Exception) -> None:
        log.error("internal error serving %s", request.op, exc_info=exc)
        self.service.requests.inc(request.op, E_INTERNAL)
        self.send(error_response(request.id, E_INTERNAL, f"{type(exc).__name__}: {exc}"))

    def _hello(self, request: Request) -> None:
        expected = self.server.auth_token
        if expected is not None:
            given = request.args.get("auth_token")
            if not isinstance(given, str) or not hmac.compare_digest(
                given.encode(), expected.encode()
            ):
                what = "missing" if given is None else "wrong"
                self.send(error_response(request.id, E_AUTH, f"{what} auth token"))
                self.close()
                return
            self.authenticated = True
        self.send(
            ok_response(
                request.id,
                {
                    "version": PROTOCOL_VERSION,
                    "node": self.service.config.id,
                    "leader": self.service.leader_endpoint(),
                },
            )
        )

    async def _answer(self, request: Request) -> None:
        await self._reply_when_done(request, self.service.handle(request))

    def _watch(self, request: Request) -> None:
        request_id = request.id

        def send(event: WatchEvent | None, error: RequestFailed | None) -> None:
            if event is not None:
                self.send({"id": request_id, "event": event.to_json()})
            elif error is not None:
                self.send(error_response(request_id, error.code, error.message))
                self.watches.pop(request_id, None)

        prefix = str(request.args.get("prefix", ""))
        from_revision = int(request.args.get("from_revision", 0))
        # The start reply goes first so the client knows the revision the watch starts after.
        current = self.service.machine.events.last_revision
        start_reply = ok_response(request_id, {"revision": current})
        try:
            # subscribe() sends the backlog synchronously; buffer it behind the start reply.
            buffered: list[tuple[WatchEvent | None, RequestFailed | None]] = []
            subscriber, _ = self.service.subscribe(
                prefix, from_revision, lambda e, err: buffered.append((e, err))
            )
        except RequestFailed as exc:
            self.send(error_response(request_id, exc.code, exc.message))
            return
        self.send(start_reply)
        for event, error in buffered:
            send(event, error)
        subscriber.send = send
        self.watches[request_id] = subscriber

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for subscriber in self.watches.values():
            self.service.unsubscribe(subscriber)
        self.watches.clear()
        for task in list(self.tasks):
            task.cancel()
        for write in list(self.writes):
            write.cancel()  # not proposed yet: never will be; proposed: its outcome is dropped
        with contextlib.suppress(Exception):
            self.writer.close()
