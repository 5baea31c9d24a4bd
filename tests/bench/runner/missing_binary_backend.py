"""Redlock whose server program is not installed: the check every third-party backend makes.

Loaded by ``lockbench compare`` as ``tests.bench.runner.missing_binary_backend:...``. The
program path is one no package provides, so ``require_server_binaries`` (the real check, run on
the real nodes) finds it missing, as it would find redis-server on a node without the package.
"""

from __future__ import annotations

from bench.backends.redlock import RedlockBackend
from bench.backends.server_binaries import ServerBinary, require_server_binaries
from lockbench.protocols import Cluster

ABSENT_REDIS = ServerBinary("/usr/bin/redis-server-not-installed", "redis-server")


class MissingBinaryRedlockBackend(RedlockBackend):
    name = "redlock-missing-binary"

    def deploy(self, cluster: Cluster) -> None:
        require_server_binaries(cluster, self.name, [ABSENT_REDIS])
        super().deploy(cluster)
