"""What the lock service needs of the Replica (reference_impl.server.replica), as a protocol, so
the service and its leader timers can be driven by a stand-in in unit tests."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class ReplicaLike(Protocol):
    """The part of ``reference_impl.server.replica.Replica`` the service uses."""

    async def propose(self, data: bytes, *, timeout: float) -> Any: ...

    def propose_future(self, data: bytes, *, timeout: float) -> asyncio.Future[Any]: ...

    async def linearizable_read(self, *, timeout: float) -> None: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_id(self) -> str | None: ...

    @property
    def commit_index(self) -> int: ...
