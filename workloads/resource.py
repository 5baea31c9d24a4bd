"""The protected resource: the file or database a lock stands guard over.

Workloads touch it inside their critical sections. It keeps its own monotonic clock (nanoseconds
since it started), one value per key, and the highest fencing token it accepted per key. In
``fenced`` mode it refuses an access whose token is lower than that high-water mark: the rule of
``reference_impl.fencing.FencingGuard``, the helper users' resource servers call, so the bench
checks what users deploy (one fencing rule in the code); in ``unfenced`` mode it accepts
everything, to show what mutual exclusion alone gives. Every access is appended to
``resource.log`` (JSON Lines) with the client, token, outcome and resource time, so a run can be
audited without trusting the clients.

Wire protocol: newline-delimited JSON over TCP, one request and one response per line.
Request ``{"op": "enter"|"read"|"write"|"exit"|"final-read", "key": k, "token": t, "value": v,
"client": c}``; response ``{"accepted": bool, "resource_time": ns, "value": v, "highest": h}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from lockbench.protocols import DefiniteFailure, Indeterminate
from reference_impl.fencing import FencingGuard

log = logging.getLogger(__name__)

ResourceMode = Literal["fenced", "unfenced"]
RESOURCE_MODES: tuple[str, ...] = ("fenced", "unfenced")
RESOURCE_OPS: frozenset[str] = frozenset({"enter", "read", "write", "exit", "final-read"})
# A request line longer than this is a protocol error (like h11's buffer limit): values are small.
MAX_LINE_BYTES = 64 * 1024
# Idle connections a client keeps for reuse; beyond this, connections are closed after use.
POOL_LIMIT = 64


class ResourceProtocolError(ValueError):
    """A malformed request: not JSON, too long, unknown op or missing field."""


class RefusedAccess(DefiniteFailure):
    """The resource refused a stale token: recorded as ``fail`` with ``error: stale-token``."""

    error = "stale-token"

    def __init__(self, key: str | None, response: Mapping[str, Any]) -> None:
        super().__init__(
            f"{key}: token refused (highest accepted {response.get('highest')}, "
            f"reason {response.get('reason', 'stale-token')})"
        )
        self.value = dict(response)
        self.error = str(response.get("reason", "stale-token"))


@dataclass(slots=True)
class _KeyState:
    value: Any = 0


@dataclass(slots=True)
class ResourceState:
    """The sans-I/O core: decides and records accesses; the server is a shell around it."""

    mode: ResourceMode
    log_file: IO[str] | None = None
    start_ns: int = field(default_factory=time.monotonic_ns)
    keys: dict[str, _KeyState] = field(default_factory=dict)
    guard: FencingGuard = field(default_factory=FencingGuard)
    accesses: int = 0
    refusals: int = 0

    def now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op not in RESOURCE_OPS:
            raise ResourceProtocolError(f"unknown op {op!r}; known: {sorted(RESOURCE_OPS)}")
        key = request.get("key")
        if not isinstance(key, str):
            raise ResourceProtocolError(f"key must be a string, got {key!r}")
        state = self.keys.setdefault(key, _KeyState())
        now = self.now()
        if op == "final-read":
            response: dict[str, Any] = {"value": state.value, "resource_time": now}
            self._record(request, now, "read", key, state)
            return response
        token = request.get("token")
        if token is not None and (
            not isinstance(token, int) or isinstance(token, bool) or token < 0
        ):
            raise ResourceProtocolError(
                f"token must be a non-negative integer or null, got {token!r}"
            )
        reason = self._refusal(key, token)
        if reason is not None:
            self.refusals += 1
            self._record(request, now, "refused", key, state, reason=reason)
            return {
                "accepted": False,
                "resource_time": now,
                "highest": self.guard.highest(key),
                "reason": reason,
            }
        if op == "write":
            state.value = request.get("value")
        response = {"accepted": True, "resource_time": now}
        if op in ("read", "write"):
            response["value"] = state.value
        self._record(request, now, "accepted", key, state)
        return response

    def _refusal(self, key: str, token: int | None) -> str | None:
        """Why an access is refused (None: accepted); the guard's mark rises in either mode."""
        if token is None:
            return None if self.mode == "unfenced" else "missing-token"
        decision = self.guard.check(key, token)
        if self.mode == "fenced" and not decision.accepted:
            return "stale-token"
        return None

    def _record(
        self,
        request: Mapping[str, Any],
        now: int,
        outcome: str,
        key: str,
        state: _KeyState,
        reason: str | None = None,
    ) -> None:
        self.accesses += 1
        if self.log_file is None:
            return
        entry = {
            "resource_time": now,
            "op": request.get("op"),
            "key": request.get("key"),
            "client": request.get("client"),
            "token": request.get("token"),
            "value": state.value,
            "outcome": outcome,
            "highest": self.guard.highest(key),
        }
        if reason is not None:
            entry["reason"] = reason
        self.log_file.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        self.log_file.flush()


class ResourceServer:
    """The asyncio TCP shell around ResourceState, started by the bench on the control node."""

    def __init__(self, mode: ResourceMode, log_path: Path | None) -> None:
        self._log_file = log_path.open("a", encoding="utf-8") if log_path else None
        self.state = ResourceState(mode, self._log_file)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_LINE_BYTES, reuse_address=True
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info(
            "protected resource (%s) listening on %s:%d", self.state.mode, self.host, self.port
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, {"error": "request line too long"})
                    return
                if not line:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ResourceProtocolError("a request must be a JSON object")
                    response = self.state.handle(request)
                except (json.JSONDecodeError, ResourceProtocolError) as exc:
                    response = {"error": f"bad request: {exc}"}
                await self._reply(writer, response)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: Mapping[str, Any]) -> None:
        writer.write(json.dumps(response, separators=(",", ":"), default=str).encode() + b"\n")
        await writer.drain()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()


class ResourceClient:
    """Talks to the resource over a small pool of connections (one request per connection at once).

    A lost connection or a protocol error mid-request is ``Indeterminate``: the access may have
    been applied. A refusal is ``RefusedAccess`` (definite: nothing changed).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self,
        op: str,
        key: str | None,
        *,
        token: int | None = None,
        value: Any = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        payload = {"op": op, "key": key, "token": token, "value": value, "client": client}
        line = json.dumps(payload, separators=(",", ":"), default=str).encode() + b"\n"
        try:
            reader, writer = self._idle.pop()
        except IndexError:
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_LINE_BYTES
                )
            except OSError as exc:
                raise DefiniteFailure(
                    f"resource unreachable at {self.host}:{self.port}: {exc}"
                ) from exc
        try:
            writer.write(line)
            await writer.drain()
            raw = await reader.readline()
        except BaseException as exc:
            writer.close()
            if isinstance(exc, OSError | asyncio.IncompleteReadError):
                raise Indeterminate(f"resource connection lost: {exc}") from exc
            raise
        if not raw:
            writer.close()
            raise Indeterminate("resource closed the connection before answering")
        if len(self._idle) < POOL_LIMIT:
            self._idle.append((reader, writer))
        else:
            writer.close()
        response: dict[str, Any] = json.loads(raw)
        if "error" in response:
            raise DefiniteFailure(f"resource refused the request: {response['error']}")
        if response.get("accepted") is False:
            raise RefusedAccess(key, response)
        return response

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
