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
Prints one JSON line: offset_ms, stepped_ms, stopped, restarted.
"""

from __future__ import annotations

import json
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
    if delta_ms:
        now = time.clock_gettime(time.CLOCK_REALTIME)
        time.clock_settime(time.CLOCK_REALTIME, now + delta_ms / 1000.0)
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
    report = {"offset_ms": new_ms, "stepped_ms": delta_ms, "stopped": state["stopped"]}
    print(json.dumps({**report, "restarted": restarted}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
