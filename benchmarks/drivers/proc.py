"""What a benchmark reads about a process from /proc: CPU time, context switches, memory."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user+system, system) CPU seconds of a process; (0, 0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    user, system = int(fields[11]), int(fields[12])
    return (user + system) / TICKS, system / TICKS


def context_switches(pid: int) -> int:
    """Voluntary plus involuntary context switches of a process so far."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default) in MiB; nan when unknown."""
    status = Path(f"/proc/{pid if pid is not None else 'self'}/status")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
