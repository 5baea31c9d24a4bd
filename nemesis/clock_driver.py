"""Moves a node's clock offset over time: a strobe (flip between two offsets) or a drift.

Rewriting the offset file that every process on the node reads keeps one clock per node (a rate
applied inside each process would count from each process's start, and two would disagree).
Stdlib only and self-contained: the nemesis ships its source in the command line. Ends by
itself after ``seconds`` or on SIGTERM, leaving the file as it last wrote it (the nemesis
resets it).

Usage:
  python3 clock_driver.py MARKER strobe FILE BASE_MS OFFSET_MS PERIOD_MS SECONDS
  python3 clock_driver.py MARKER drift  FILE BASE_MS RATE      PERIOD_MS SECONDS
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# The offset file holds signed seconds ("+1.5"), never a unit.
LIMIT_MS = 3_600_000.0


def format_offset(offset_ms: float) -> str:
    """The offset file's text: signed seconds with microseconds, e.g. ``+0.500000``."""
    return f"{offset_ms / 1000.0:+.6f}\n"


def write_offset(path: str, offset_ms: float) -> None:
    """Replace the file atomically so a server never reads a half-written offset."""
    temporary = f"{path}.driver.tmp"
    with open(temporary, "w", encoding="ascii") as fh:
        fh.write(format_offset(offset_ms))
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    if len(argv) != 7 or argv[1] not in ("strobe", "drift"):
        print(__doc__, file=sys.stderr)
        return 2
    _, mode, path, base_raw, value_raw, period_raw, seconds_raw = argv
    base_ms, value, period = float(base_raw), float(value_raw), float(period_raw) / 1000.0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start = time.monotonic()
    deadline = start + float(seconds_raw)
    flipped = False
    while not stop.is_set() and time.monotonic() < deadline:
        if mode == "strobe":
            flipped = not flipped
            offset = base_ms + value if flipped else base_ms
        else:
            elapsed_ms = (time.monotonic() - start) * 1000.0
            offset = base_ms + (value - 1.0) * elapsed_ms
        write_offset(path, max(-LIMIT_MS, min(LIMIT_MS, offset)))
        stop.wait(period)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
