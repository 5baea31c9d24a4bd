"""Redlock: five independent Redis servers, one per node, and the Redlock algorithm.

The algorithm is ``bench.backends.redis_locks`` (written from its specification and tested rule
by rule against real servers). No maintained implementation fitted: aioredlock (asyncio) was last
released in 2022 and extends locks on its own schedule; pottery's Redlock is synchronous.

The servers share nothing: a lock is a key set on a majority. It has no fencing token, so tests
with it use an unfenced resource. Its safety rests on each server keeping the key for its TTL:
a server that restarts without the key (no persistence, or writes not yet on disk when the
machine lost power) or whose clock jumps forward can hand the same lock to a second client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.backends.redis_locks import RedlockClient, RedlockSettings
from bench.backends.redis_servers import RedisServerOptions, RedisServers, redis_endpoint
from lockbench.errors import ConfigError
from lockbench.protocols import Cluster, LockClient, Node

ALGORITHM_KEYS = frozenset({"instance_timeout", "retry_delay"})
REDLOCK_DEFAULTS = RedlockSettings()


def parse_settings(
    options: Mapping[str, Any], backend: str, defaults: RedlockSettings = REDLOCK_DEFAULTS
) -> tuple[RedisServerOptions, RedlockSettings]:
    """backend_options of redis and redlock: server persistence plus the algorithm's timing."""
    extra = RedisServerOptions.parse(options, backend, ALGORITHM_KEYS)
    values: dict[str, float] = {}
    for key in sorted(ALGORITHM_KEYS):
        value = extra.get(key, getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"backend_options: {key} must be positive seconds: {value!r}")
        values[key] = float(value)
    settings = RedlockSettings(
        instance_timeout=values["instance_timeout"],
        retry_delay=values["retry_delay"],
        fencing_counter=defaults.fencing_counter,
    )
    return RedisServerOptions.from_mapping(options), settings


class RedlockBackend(RedisServers):
    """Implements lockbench.protocols.Backend: a Redis server on every node, Redlock clients."""

    name = "redlock"
    defaults = REDLOCK_DEFAULTS
    # independent servers: no leader to wait for, and no fencing token (lockbench.protocols)
    elects_leader = False
    fencing_tokens = False

    def __init__(
        self,
        server_options: RedisServerOptions | None = None,
        settings: RedlockSettings | None = None,
    ) -> None:
        super().__init__(server_options)
        self.settings = settings or self.defaults

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedlockBackend:
        return cls(*parse_settings(options, cls.name, cls.defaults))

    def leader(self, cluster: Cluster) -> str | None:
        """None: the servers are independent; there is no leader."""
        return None

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient:
        endpoints = [redis_endpoint(n) for n in self.server_nodes(cluster)]
        return RedlockClient(endpoints, ttl=ttl, process=process, settings=self.settings)
