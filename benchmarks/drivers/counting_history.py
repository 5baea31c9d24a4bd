"""A history sink that keeps nothing, only counts: the runner benchmarks' baseline for writing
(what the client path costs without ``lockbench.history_writer.HistoryWriter``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from lockbench.history import OpType, Process


class CountingHistory:
    """A sink that keeps nothing, only counts: the runner benchmark's baseline for writing."""

    def __init__(self) -> None:
        self.start_ns = time.monotonic_ns()
        self.count = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def append(
        self,
        process: Process,
        type: OpType,
        f: str,
        key: str | None = None,
        value: Any = None,
        **optional: Any,
    ) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> None:
        """Nothing was opened."""
