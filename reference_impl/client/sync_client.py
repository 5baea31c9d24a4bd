"""A blocking wrapper around AsyncLockClient for code that is not asyncio.

The async client runs on a private event loop in a daemon thread; every method submits a
coroutine to it and waits. ``with client.lock("jobs/42") as lease:`` acquires, yields the lease
(with its fencing token) and releases on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from reference_impl.client.async_client import (
    DEFAULT_DRIFT_BOUND,
    AsyncLockClient,
    Holder,
    Lease,
    Owner,
)

T = TypeVar("T")


class LockClient:
    """Create with ``LockClient.connect(endpoints, ttl=..., ...)``; close with ``close()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._client: AsyncLockClient | None = None

    @classmethod
    def connect(
        cls,
        endpoints: Sequence[str],
        *,
        ttl: float = 10.0,
        timeout: float = 5.0,
        auth_token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        client_id: str | None = None,
        drift_bound: float = DEFAULT_DRIFT_BOUND,
        on_session_lost: Callable[[str], None] | None = None,
    ) -> LockClient:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="lockclient", daemon=True)
        thread.start()
        client = cls(loop, thread)
        try:
            client._client = client._run(
                AsyncLockClient.connect(
                    endpoints,
                    ttl=ttl,
                    timeout=timeout,
                    auth_token=auth_token,
                    ssl=ssl,
                    client_id=client_id,
                    drift_bound=drift_bound,
                    on_session_lost=on_session_lost,
                )
            )
        except BaseException:
            client._shutdown_loop()
            raise
        return client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def inner(self) -> AsyncLockClient:
        if self._client is None:
            raise RuntimeError("the client is closed")
        return self._client

    @property
    def session_id(self) -> str | None:
        return self.inner.session_id

    @property
    def session_lost(self) -> bool:
        return not self.inner.session_alive()

    def acquire(self, name: str, *, timeout: float | None = None, shared: bool = False) -> Lease:
        return self._run(self.inner.acquire(name, timeout=timeout, shared=shared))

    def release(self, name: str) -> None:
        self._run(self.inner.release(name))

    @contextlib.contextmanager
    def lock(
        self, name: str, *, timeout: float | None = None, shared: bool = False
    ) -> Iterator[Lease]:
        lease = self.acquire(name, timeout=timeout, shared=shared)
        try:
            yield lease
        finally:
            if not self.inner.session_lost:
                self.release(name)

    def owner(self, name: str, *, endpoint: str | None = None) -> Owner:
        return self._run(self.inner.owner(name, endpoint=endpoint))

    def check_token(self, name: str, token: int) -> bool:
        return self._run(self.inner.check_token(name, token))

    def campaign(self, election: str, value: str, *, timeout: float | None = None) -> Lease:
        return self._run(self.inner.campaign(election, value, timeout=timeout))

    def resign(self, election: str) -> None:
        self._run(self.inner.resign(election))

    def leader(self, election: str) -> Holder | None:
        return self._run(self.inner.leader(election))

    def close(self) -> None:
        if self._client is not None:
            try:
                self._run(self._client.close())
            finally:
                self._client = None
                self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> LockClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
