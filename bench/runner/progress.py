"""Live progress: elapsed and remaining time, ops/s, ok/fail/info, current faults, leader.

Shown with rich only when stdout is a terminal; otherwise (CI, pipes) one summary line is logged
every ``LOG_EVERY_S`` seconds, so bench.log shows how the run went without a display.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from bench.runner.process import RunStats

log = logging.getLogger(__name__)

REFRESH_S = 0.5
LOG_EVERY_S = 10.0
RATE_WINDOW_S = 2.0


@dataclass
class ProgressView:
    """Turns RunStats into a line or a table; keeps a short window for the current ops/s."""

    stats: RunStats
    time_limit: float
    test_name: str
    started: float = field(default_factory=time.monotonic)
    _samples: list[tuple[float, int]] = field(default_factory=list)

    def ops_per_second(self) -> float:
        now = time.monotonic()
        self._samples.append((now, self.stats.completed))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.pop(0)
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def faults(self) -> str:
        return ", ".join(sorted(self.stats.active_faults)) or "none"

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        s = self.stats
        return (
            f"{s.phase}: {elapsed:5.1f}s / {self.time_limit:g}s  "
            f"{self.ops_per_second():7.1f} ops/s  "
            f"ok {s.ok}  fail {s.fail}  info {s.info}  faults: {self.faults()}  "
            f"leader: {s.leader or '-'}"
        )

    def table(self) -> Table:
        elapsed = time.monotonic() - self.started
        remaining = max(0.0, self.time_limit - elapsed)
        s = self.stats
        table = Table(title=f"lockbench: {self.test_name}", show_header=False, expand=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("phase", s.phase)
        table.add_row("elapsed / remaining", f"{elapsed:.1f}s / {remaining:.1f}s")
        table.add_row("ops/s", f"{self.ops_per_second():.1f}")
        table.add_row(
            "ok / fail / info", f"[green]{s.ok}[/] / [yellow]{s.fail}[/] / [red]{s.info}[/]"
        )
        table.add_row("retired processes", str(s.retired))
        table.add_row("current faults", self.faults())
        table.add_row("leader", s.leader or "-")
        return table


async def show_progress(
    view: ProgressView, stop: asyncio.Event, *, live: bool | None = None
) -> None:
    """Refresh the display until ``stop``; ``live=None`` means: only on a terminal."""
    if live is None:
        live = sys.stdout.isatty()
    if live:
        console = Console()
        with Live(view.table(), console=console, refresh_per_second=4, transient=False) as display:
            while not stop.is_set():
                await _wait(stop, REFRESH_S)
                display.update(view.table())
        return
    while not stop.is_set():
        await _wait(stop, LOG_EVERY_S)
        log.info("progress: %s", view.line())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return
