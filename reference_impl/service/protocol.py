"""The client wire protocol of lockd, sans-I/O (after h11): bytes in, messages out.

A frame is a 4-byte big-endian length followed by that many bytes of a UTF-8 JSON object
(docs/protocol.md). ``FrameDecoder.feed`` turns received bytes into decoded objects;
``encode_frame`` turns an object into bytes; ``parse_request`` checks a request's shape. Every
problem is a ``ProtocolError``; ``fatal`` says whether framing is broken (the connection must be
closed) or only this request is bad (answer it with an error and keep serving).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from reference_impl.service import fastjson
from reference_impl.service.commands import (
    MAX_CLIENT_ID_BYTES,
    MAX_VALUE_BYTES,
    CommandError,
    validate_name,
    validate_ttl,
)

PROTOCOL_VERSION: Final = 1
HEADER = struct.Struct(">I")
# 1 MiB: far above any request (names are at most 256 bytes), small enough that a hostile client
# cannot make the server buffer much (etcd's default request limit is 1.5 MiB).
MAX_FRAME_BYTES: Final = 1 << 20
MAX_REQUEST_ID: Final = (1 << 53) - 1  # exact in every JSON implementation
MAX_SEQ: Final = (1 << 53) - 1
MAX_TIMEOUT_SECONDS: Final = 3600.0

# Error codes (docs/protocol.md). DEFINITE ones certainly did not take effect.
E_NOT_LEADER = "not-leader"
E_UNAVAILABLE = "unavailable"
E_TIMEOUT = "timeout"
E_SESSION_EXPIRED = "session-expired"
E_NOT_HOLDER = "not-holder"
E_BAD_REQUEST = "bad-request"
E_AUTH = "auth"
E_ACQUIRE_TIMEOUT = "acquire-timeout"
E_COMPACTED = "compacted"
E_CONFLICT = "conflict"
E_STALE_REQUEST = "stale-request"
E_PROTOCOL = "protocol"
E_INTERNAL = "internal"
DEFINITE_ERRORS: Final = frozenset(
    {
        E_NOT_LEADER,
        E_SESSION_EXPIRED,
        E_NOT_HOLDER,
        E_BAD_REQUEST,
        E_AUTH,
        E_ACQUIRE_TIMEOUT,
        E_COMPACTED,
        E_CONFLICT,
        E_STALE_REQUEST,
        E_PROTOCOL,
    }
)

ELECTION_PREFIX: Final = "@election/"  # client elections are exclusive locks under this prefix


class ProtocolError(Exception):
    """Malformed input. ``fatal``: framing is broken and the connection must be closed."""

    def __init__(self, message: str, *, fatal: bool, request_id: int = 0) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.request_id = request_id


def encode_frame(message: dict[str, Any]) -> bytes:
    # ASCII-escaped: any str (even a lone surrogate echoed in a message) encodes.
    body = fastjson.dumps(message)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}", fatal=False)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes and returns complete JSON objects.

    When framing breaks, the frames decoded before the broken one are still returned; the
    decoder is then ``broken`` and every later ``feed`` raises the fatal ProtocolError.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self.error: ProtocolError | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        self._buffer += data
        messages: list[dict[str, Any]] = []
        try:
            while len(self._buffer) >= HEADER.size:
                message = self._next()
                if message is None:
                    break
                messages.append(message)
        except ProtocolError as exc:
            self.error = exc
            self._buffer.clear()
            if not messages:
                raise
        return messages

    def _next(self) -> dict[str, Any] | None:
        (length,) = HEADER.unpack_from(self._buffer)
        if length == 0 or length > self.max_frame_bytes:
            raise ProtocolError(
                f"frame length {length} outside 1..{self.max_frame_bytes}", fatal=True
            )
        if len(self._buffer) < HEADER.size + length:
            return None
        body = bytes(self._buffer[HEADER.size : HEADER.size + length])
        del self._buffer[: HEADER.size + length]
        try:
            message = fastjson.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"frame is not UTF-8 JSON: {exc}", fatal=True) from exc
        if not isinstance(message, dict):
            raise ProtocolError("frame is not a JSON object", fatal=True)
        return message


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    args: dict[str, Any]


# op -> {argument: (kind, required)}; kinds are checked by _check_arg.
REQUEST_SCHEMAS: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    "hello": {"auth_token": ("str", False), "client_id": ("client_id", False)},
    "open_session": {"client_id": ("client_id", True), "seq": ("seq", True), "ttl": ("ttl", True)},
    "keepalive": {"session": ("session", True)},
    "close_session": {
        "client_id": ("client_id", True),
        "seq": ("seq", True),
        "session": ("session", True),
    },
    "acquire": {
        "client_id": ("client_id", True),
        "seq": ("seq", True),
        "session": ("session", True),
        "name": ("name", True),
        "shared": ("bool", False),
        "timeout": ("timeout", False),
        "value": ("value", False),
    },
    "release": {
        "client_id": ("client_id", True),
        "seq": ("seq", True),
        "session": ("session", True),
        "name": ("name", True),
    },
    "owner": {"name": ("name", True)},
    "check_token": {"name": ("name", True), "token": ("seq", True)},
    "watch": {"prefix": ("prefix", False), "from_revision": ("revision", False)},
    "status": {},
    "members": {},
}


def _check_arg(op: str, key: str, kind: str, value: Any) -> None:  # noqa: C901, PLR0912 - one branch per argument type
    def bad(reason: str) -> ProtocolError:
        return ProtocolError(f"{op}: argument {key!r} {reason}", fatal=False)

    if kind in ("str", "client_id", "session", "value"):
        if not isinstance(value, str):
            raise bad(f"must be a string, got {type(value).__name__}")
        limit = {"client_id": MAX_CLIENT_ID_BYTES, "session": 32, "value": MAX_VALUE_BYTES}
        if len(value) * 4 > limit.get(kind, MAX_VALUE_BYTES) and len(
            value.encode("utf-8", "surrogatepass")
        ) > limit.get(kind, MAX_VALUE_BYTES):
            raise bad("is too long")
        if kind in ("client_id", "session") and not value:
            raise bad("must not be empty")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise bad("contains surrogate characters (not valid UTF-8)") from exc
    elif kind in ("seq", "revision"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"must be an integer, got {type(value).__name__}")
        low = 0 if kind == "revision" else 1
        if not low <= value <= MAX_SEQ:
            raise bad(f"must be between {low} and {MAX_SEQ}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"must be true or false, got {type(value).__name__}")
    elif kind == "timeout":
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"must be a number of seconds or null, got {type(value).__name__}")
        if not 0 <= value <= MAX_TIMEOUT_SECONDS:
            raise bad(f"must be between 0 and {MAX_TIMEOUT_SECONDS}")
    elif kind in ("name", "prefix"):
        if kind == "prefix" and value == "":
            return
        try:
            validate_name(value, "prefix" if kind == "prefix" else "name")
        except CommandError as exc:
            raise ProtocolError(f"{op}: argument {key!r}: {exc}", fatal=False) from exc
    elif kind == "ttl":
        try:
            validate_ttl(value)
        except CommandError as exc:
            raise bad(str(exc)) from exc


def parse_request(message: dict[str, Any]) -> Request:
    """Check a decoded frame is a well-formed request; raises a non-fatal ProtocolError."""
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise ProtocolError("request 'id' must be an integer", fatal=False)
    if not 1 <= request_id <= MAX_REQUEST_ID:
        raise ProtocolError(f"request 'id' must be between 1 and {MAX_REQUEST_ID}", fatal=False)
    op = message.get("op")
    schema = REQUEST_SCHEMAS.get(op) if isinstance(op, str) else None
    if schema is None or not isinstance(op, str):
        raise ProtocolError(f"unknown op {op!r}", fatal=False, request_id=request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(f"{op}: 'args' must be an object", fatal=False, request_id=request_id)
    for key in args:
        if key not in schema:
            raise ProtocolError(
                f"{op}: unknown argument {key!r}", fatal=False, request_id=request_id
            )
    for key, (kind, required) in schema.items():
        if key not in args:
            if required:
                raise ProtocolError(
                    f"{op}: missing argument {key!r}", fatal=False, request_id=request_id
                )
            continue
        try:
            _check_arg(op, key, kind, args[key])
        except ProtocolError as exc:
            exc.request_id = request_id
            raise
    return Request(request_id, op, args)


def ok_response(request_id: int, result: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def error_response(
    request_id: int, code: str, message: str, *, leader: str | None = None
) -> dict[str, Any]:
    return {
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": message, "leader": leader},
    }
