"""Redis as a lock service the way it is usually deployed: one server, ``SET NX PX``.

One Redis server runs on the first node (n1); the other nodes stay idle, so faults aimed at
them reach nothing, as on a real deployment. A lock is ``SET lock value NX PX ttl`` with a value
unique to the attempt, its fencing token ``INCR lock:token`` once the SET succeeded, its release a
compare-and-delete script, and a held lock is extended every TTL/3 while the holder lives. It is
the Redlock client of ``bench.backends.redis_locks`` with one instance (a majority of one).

The server's expiry runs on its own clock, and nothing replicates the key: a holder paused past
the TTL (the lease-expiry workload's stall, or a pause of the client) loses the lock to the next
client without knowing, and only a fencing token keeps its late writes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.backends.redis_locks import RedlockSettings
from bench.backends.redlock import RedlockBackend
from lockbench.protocols import Cluster, Node

# One server: the usual client socket timeout (not Redlock's per-instance few milliseconds), a
# short poll while the lock is taken, and the INCR token.
SINGLE_SERVER_DEFAULTS = RedlockSettings(
    instance_timeout=1.0, retry_delay=0.05, fencing_counter=True
)


class RedisBackend(RedlockBackend):
    """Implements lockbench.protocols.Backend: one Redis server on the first node."""

    name = "redis"
    defaults = SINGLE_SERVER_DEFAULTS
    # one server is the whole service (nothing elected); its token is the INCR counter
    elects_leader = False
    fencing_tokens = True

    def server_nodes(self, cluster: Cluster) -> Sequence[Node]:
        return list(cluster.nodes)[:1]

    def leader(self, cluster: Cluster) -> str | None:
        """The one server's node: it is the whole service."""
        return self.server_nodes(cluster)[0].name
