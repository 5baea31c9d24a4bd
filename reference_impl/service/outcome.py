"""The result of applying one command to the lock state machine.

One small, JSON-serialisable value type for every command, so results can be cached in the
deduplication table (and therefore in snapshots) and sent to clients without per-command classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

Status: TypeAlias = Literal["ok", "queued", "busy", "error"]

# Error codes a command can end with. They are part of the client protocol (docs/protocol.md).
ERR_SESSION_EXPIRED = "session-expired"
ERR_NOT_HOLDER = "not-holder"
ERR_BAD_REQUEST = "bad-request"
ERR_STALE_REQUEST = "stale-request"
ERR_CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did. ``token`` is set for grants, ``session`` for session opens."""

    status: Status
    error: str | None = None
    message: str = ""
    token: int | None = None
    session: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "error"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "message": self.message,
            "token": self.token,
            "session": self.session,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            status=data["status"],
            error=data.get("error"),
            message=data.get("message", ""),
            token=data.get("token"),
            session=data.get("session"),
        )


OK = Outcome("ok")


def failed(code: str, message: str) -> Outcome:
    return Outcome("error", error=code, message=message)
