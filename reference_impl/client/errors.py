"""Errors of the lock client, split by what the caller may conclude.

``DefiniteError``: the operation certainly did not take effect (the bench records ``fail``).
``IndeterminateError``: it may or may not have taken effect, now or later (the bench records
``info`` and never assumes it failed).
"""

from __future__ import annotations


class LockServiceError(Exception):
    """Base of every error the lock client raises."""


class DefiniteError(LockServiceError):
    """The request certainly had no effect."""


class NotHolder(DefiniteError):
    """Released (or checked) a lock this session does not hold."""


class AcquireTimeout(DefiniteError):
    """A try-acquire's timeout passed while queued; the server removed the waiter."""


class SessionExpired(DefiniteError):
    """The session is gone (expired on the leader, closed, or past the client's safe deadline)."""


class BadRequest(DefiniteError):
    """The server rejected the request as malformed (bad name, bad argument, unknown op)."""


class AuthError(DefiniteError):
    """Missing or wrong auth token, or a TLS mismatch between client and server."""


class WatchCompacted(DefiniteError):
    """The resume revision of a watch was compacted away; re-read owners and watch from now."""

    def __init__(self, message: str, oldest: int | None = None) -> None:
        super().__init__(message)
        self.oldest = oldest


class IndeterminateError(LockServiceError):
    """The request may or may not have taken effect."""


class Unavailable(IndeterminateError):
    """No endpoint answered as leader within the retry budget."""


class RequestTimeout(IndeterminateError):
    """No answer within the request timeout."""


class ConnectionLost(IndeterminateError):
    """The connection broke while the request was in flight."""
