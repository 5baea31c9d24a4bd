"""The error a client request ends with: a protocol error code, a message, a leader hint."""

from __future__ import annotations


class RequestFailed(Exception):
    """A request that ends with an error reply (code from docs/protocol.md)."""

    def __init__(self, code: str, message: str, *, leader: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.leader = leader
