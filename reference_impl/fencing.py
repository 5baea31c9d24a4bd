"""The resource side of fencing: reject any token lower than the highest one seen.

A lock alone cannot protect a resource from a holder that paused past its lease (Kleppmann, "How
to do distributed locking"): the paused holder wakes up and writes with an old token. Every grant
of lockd carries a token that strictly increases per lock, so a resource that remembers the
highest token it accepted and refuses smaller ones is safe against such stale holders. Equal
tokens are accepted: the current holder makes many accesses with its one token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


class StaleToken(Exception):
    """An access with a token lower than one the resource already accepted."""

    def __init__(self, key: str, token: int, highest: int) -> None:
        super().__init__(
            f"{key}: token {token} is stale (highest accepted {highest}); "
            "the lock was granted to someone else since: re-acquire before retrying"
        )
        self.key = key
        self.token = token
        self.highest = highest


@dataclass(frozen=True, slots=True)
class FenceDecision:
    accepted: bool
    highest: int


class FencingGuard:
    """High-water marks per resource key; thread-safe so a resource can share one guard.

    ``persist`` (optional) is called with (key, token) under the guard's lock whenever the mark
    rises, so a resource that restarts can reload its marks; without persistence a restarted
    resource must start from the lock service's current token (``check_token``) instead.
    """

    def __init__(
        self,
        initial: dict[str, int] | None = None,
        persist: Callable[[str, int], None] | None = None,
    ) -> None:
        self._highest: dict[str, int] = dict(initial or {})
        self._persist = persist
        self._mutex = threading.Lock()

    def check(self, key: str, token: int) -> FenceDecision:
        """Accept ``token`` for ``key`` if it is not lower than the highest seen; record it."""
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise ValueError(f"{key}: a fencing token must be a non-negative integer")
        with self._mutex:
            highest = self._highest.get(key, -1)
            if token < highest:
                return FenceDecision(False, highest)
            if token > highest:
                self._highest[key] = token
                if self._persist is not None:
                    self._persist(key, token)
            return FenceDecision(True, token)

    def require(self, key: str, token: int) -> None:
        """Like ``check`` but raises StaleToken on refusal."""
        decision = self.check(key, token)
        if not decision.accepted:
            raise StaleToken(key, token, decision.highest)

    def highest(self, key: str) -> int | None:
        with self._mutex:
            return self._highest.get(key)
