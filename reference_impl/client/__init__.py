"""Clients of lockd: ``AsyncLockClient`` (asyncio), ``LockClient`` (blocking), ``lockctl`` (CLI)."""

from reference_impl.client.async_client import AsyncLockClient, Holder, Lease, Owner, WatchEvent
from reference_impl.client.errors import (
    AcquireTimeout,
    AuthError,
    BadRequest,
    ConnectionLost,
    DefiniteError,
    IndeterminateError,
    LockServiceError,
    NotHolder,
    RequestTimeout,
    SessionExpired,
    Unavailable,
    WatchCompacted,
)
from reference_impl.client.sync_client import LockClient

__all__ = [
    "AcquireTimeout",
    "AsyncLockClient",
    "AuthError",
    "BadRequest",
    "ConnectionLost",
    "DefiniteError",
    "Holder",
    "IndeterminateError",
    "Lease",
    "LockClient",
    "LockServiceError",
    "NotHolder",
    "Owner",
    "RequestTimeout",
    "SessionExpired",
    "Unavailable",
    "WatchCompacted",
    "WatchEvent",
]
