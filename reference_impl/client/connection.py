"""One client connection to one lockd endpoint: framing, request ids, response dispatch.

The reader task routes each response frame to the future of its request id, and watch event
frames to the queue of their watch. When the connection breaks every pending request fails with
``ConnectionLost`` (indeterminate) and every watch queue receives the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl as ssl_module
from typing import Any

from reference_impl.client.errors import AuthError, ConnectionLost, LockServiceError
from reference_impl.service.protocol import (
    MAX_REQUEST_ID,
    FrameDecoder,
    ProtocolError,
    encode_frame,
)

log = logging.getLogger(__name__)
READ_CHUNK = 65536
# How long close() waits for the reader task and the socket (a peer that hangs cannot hold it).
CLOSE_WAIT_S = 1.0


class ServerError(Exception):
    """An error reply: ``code`` from docs/protocol.md, ``leader`` hint for not-leader."""

    def __init__(self, code: str, message: str, leader: str | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.leader = leader


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    return host.strip("[]"), int(port)


class Connection:
    def __init__(
        self, endpoint: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[dict[str, Any] | BaseException]] = {}
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        endpoint: str,
        *,
        timeout: float,
        ssl: ssl_module.SSLContext | None = None,
        auth_token: str | None = None,
        client_id: str | None = None,
    ) -> Connection:
        host, port = parse_endpoint(endpoint)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl, limit=READ_CHUNK), timeout
            )
        except ssl_module.SSLError as exc:
            raise AuthError(f"{endpoint}: TLS handshake failed: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"{endpoint}: cannot connect: {exc}") from exc
        connection = cls(endpoint, reader, writer)
        hello: dict[str, Any] = {}
        if auth_token is not None:
            hello["auth_token"] = auth_token
        if client_id is not None:
            hello["client_id"] = client_id
        try:
            await connection.call("hello", hello, timeout=timeout)
        except ServerError as exc:
            await connection.close()
            if exc.code == "auth":
                raise AuthError(f"{endpoint}: {exc.message}") from exc
            raise ConnectionLost(f"{endpoint}: hello refused: {exc}") from exc
        except ConnectionLost as exc:
            await connection.close()
            if ssl is None:
                raise ConnectionLost(
                    f"{endpoint}: the server closed the connection during hello; if its client "
                    "port uses TLS, connect with ssl=<SSLContext> (lockctl --tls-ca)"
                ) from exc
            raise
        except LockServiceError:
            await connection.close()
            raise
        except TimeoutError as exc:
            await connection.close()
            raise ConnectionLost(f"{endpoint}: no answer to hello within {timeout} s") from exc
        except BaseException:  # cancelled: the reader task must not outlive the connection
            connection.abort()
            raise
        return connection

    @property
    def closed(self) -> bool:
        return self._closed

    def _next_id(self) -> int:
        request_id = next(self._ids)
        if request_id > MAX_REQUEST_ID:
            self._ids = itertools.count(1)
            request_id = next(self._ids)
        return request_id

    async def call(self, op: str, args: dict[str, Any], *, timeout: float | None) -> Any:
        """Send one request and wait for its result; ServerError for an error reply."""
        if self._closed:
            raise ConnectionLost(f"{self.endpoint}: connection closed")
        request_id = self._next_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(encode_frame({"id": request_id, "op": op, "args": args}))
            if timeout is None:
                return await future
            # asyncio.timeout, not wait_for: on 3.11 wait_for wraps the wait in another future
            # and callbacks (measured ~17 us per call in the benchmark driver, ~4 us this way).
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    def stream(
        self, op: str, args: dict[str, Any]
    ) -> tuple[int, asyncio.Queue[dict[str, Any] | BaseException]]:
        """Start a streaming request (watch); frames with its id go to the returned queue."""
        if self._closed:
            raise ConnectionLost(f"{self.endpoint}: connection closed")
        request_id = self._next_id()
        queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._streams[request_id] = queue
        self._writer.write(encode_frame({"id": request_id, "op": op, "args": args}))
        return request_id, queue

    def end_stream(self, request_id: int) -> None:
        self._streams.pop(request_id, None)

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        failure: BaseException = ConnectionLost(f"{self.endpoint}: connection closed by server")
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                for message in decoder.feed(data):
                    self._dispatch(message)
        except ProtocolError as exc:
            failure = ConnectionLost(f"{self.endpoint}: bad frame from server: {exc}")
        except (OSError, ssl_module.SSLError) as exc:
            failure = ConnectionLost(f"{self.endpoint}: {exc}")
        except asyncio.CancelledError:
            failure = ConnectionLost(f"{self.endpoint}: connection closed")
            raise
        finally:
            self._fail_all(failure)

    def _dispatch(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if not isinstance(request_id, int):
            return
        stream = self._streams.get(request_id)
        if stream is not None:
            stream.put_nowait(message)
            return
        future = self._pending.get(request_id)
        if future is None or future.done():
            if request_id == 0 and not message.get("ok", True):
                log.warning("%s: server error: %s", self.endpoint, message.get("error"))
            return
        if message.get("ok"):
            future.set_result(message.get("result"))
        else:
            error = message.get("error") or {}
            future.set_exception(
                ServerError(
                    str(error.get("code", "internal")),
                    str(error.get("message", "")),
                    error.get("leader"),
                )
            )

    def _fail_all(self, failure: BaseException) -> None:
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        for queue in self._streams.values():
            queue.put_nowait(failure)
        self._pending.clear()
        self._streams.clear()
        with contextlib.suppress(Exception):
            self._writer.close()

    def abort(self) -> None:
        """Close now, without waiting: cancels the reader task and closes the socket.

        Safe from a cancelled coroutine or a ``finally``; the task then ends on the next loop
        iteration, so no reader is left pending ("Task was destroyed but it is pending").
        """
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()

    async def close(self) -> None:
        """Close and wait (bounded) until the reader task has ended and the socket is closed.

        A cancellation of the caller propagates (it is not swallowed); the task is cancelled
        before the first await, so it ends even then.
        """
        self.abort()
        if not self._task.done():
            await asyncio.wait({self._task}, timeout=CLOSE_WAIT_S)
        with contextlib.suppress(OSError, TimeoutError, ssl_module.SSLError):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_WAIT_S)
