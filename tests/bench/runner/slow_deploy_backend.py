"""The memory backend with a deploy that takes a while, so a test can press Ctrl-C during it.

Loaded by ``lockbench run`` as ``slow_deploy_backend:SlowDeployBackend`` (tests/bench/runner on
PYTHONPATH); the service is the real in-process memory service.
"""

from __future__ import annotations

import time

from bench.backends.memory import MemoryBackend
from lockbench.protocols import Cluster

DEPLOY_SECONDS = 3.0


class SlowDeployBackend(MemoryBackend):
    name = "slow-deploy"

    def deploy(self, cluster: Cluster) -> None:
        """Take DEPLOY_SECONDS, like copying a wheel to five nodes over SSH."""
        time.sleep(DEPLOY_SECONDS)
