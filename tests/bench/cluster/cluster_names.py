"""This suite's netns names (lbc*), subnet and local ports, and a check for leftovers.

Other suites use lbn/lbr and 10.77.2.0/24 / 10.77.3.0/24 at the same time, so everything here is
found and checked by the ``lbc`` prefix only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PREFIX = "lbc"
SUBNET = "10.77.1.0/24"
LOCAL_BASE_OFFSET = 15000  # local runtime ports land in 22000-22999


def leftovers(prefix: str, cluster_dir: Path) -> list[str]:
    """Namespaces, links, processes and iptables rules that a cluster ``prefix`` left behind."""
    found: list[str] = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [
        f"netns {line.split()[0]}"
        for line in namespaces.splitlines()
        if line.startswith(f"{prefix}-")
    ]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [
        f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f" {prefix}-" in line
    ]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"rule {line}" for line in rules.splitlines() if f"{prefix}-" in line]
    marker = str(cluster_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"process {entry.name}: {cmdline.strip()}")
    return found
