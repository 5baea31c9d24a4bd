"""Steps a VM's own system clock to an offset from real time; runs on the node, as root.

The node keeps what is in force in a state file (JSON: ``offset_ms``, ``base_ms``,
``stopped``), so any later process (the next step, a heal after a crash) knows how far to step
back. ``base_ms`` is CLOCK_REALTIME minus CLOCK_BOOTTIME before the first step: the same
difference later, minus it, is the step in force, measured on the node to the microsecond
(nemesis.system_clock). The first step away from real time stops the time-sync services that
are running (so they do not undo the step during the fault's window) and records them; the step
back to offset 0 starts them again and removes the state file. Stdlib only: the nemesis ships
this source in the command line.

Usage: python3 system_clock_step.py STATE_FILE OFFSET_MS
Prints one JSON line: offset_ms, stepped_ms, by (adjtimex or clock_settime), stopped, restarted.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import time

TIME_SYNC_SERVICES = ("chrony", "systemd-timesyncd", "ntp", "ntpsec", "openntpd")


def _systemctl(*args: str) -> int:
    try:
        return subprocess.run(["systemctl", *args], capture_output=True, timeout=30).returncode
    except (OSError, subprocess.TimeoutExpired):
        return 1


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (linux/timex.h, 64-bit)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


ADJ_SETOFFSET = 0x0100
ADJ_NANO = 0x2000


def step(seconds: float) -> str:
    """Add ``seconds`` to CLOCK_REALTIME in one system call (adjtimex ADJ_SETOFFSET, as chrony's
    makestep does), so no time is lost between reading the clock and setting it; where that is
    unavailable, read and set (losing the moment in between)."""
    whole = math.floor(seconds)
    timex = _Timex(modes=ADJ_SETOFFSET | ADJ_NANO)
    timex.time.tv_sec = whole
    timex.time.tv_usec = min(999_999_999, round((seconds - whole) * 1e9))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.adjtimex(ctypes.byref(timex)) >= 0:
        return "adjtimex"
    now = time.clock_gettime(time.CLOCK_REALTIME)
    time.clock_settime(time.CLOCK_REALTIME, now + seconds)
    return "clock_settime"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, new_ms = argv[0], float(argv[1])
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except FileNotFoundError:
        realtime = time.clock_gettime(time.CLOCK_REALTIME)
        base_ms = (realtime - time.clock_gettime(time.CLOCK_BOOTTIME)) * 1000.0
        state = {"offset_ms": 0.0, "base_ms": base_ms, "stopped": []}
    if new_ms != 0.0 and not state["stopped"] and state["offset_ms"] == 0.0:
        for service in TIME_SYNC_SERVICES:
            if _systemctl("is-active", "--quiet", service) == 0:
                _systemctl("stop", service)
                state["stopped"].append(service)
    delta_ms = new_ms - float(state["offset_ms"])
    how = step(delta_ms / 1000.0) if delta_ms else "none"
    restarted = []
    if new_ms == 0.0:
        for service in state["stopped"]:
            if _systemctl("start", service) == 0:
                restarted.append(service)
        if os.path.exists(path):
            os.remove(path)
    else:
        state["offset_ms"] = new_ms
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(temporary, path)
    report = {"offset_ms": new_ms, "stepped_ms": delta_ms, "by": how, "stopped": state["stopped"]}
    print(json.dumps({**report, "restarted": restarted}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
