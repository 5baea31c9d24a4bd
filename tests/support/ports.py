"""Free TCP ports on loopback, asked of the kernel instead of hard-coded, so test runs (and
helpers running their own suites beside each other) do not collide on a fixed number."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
ATTEMPTS = 50
# Blocks are drawn from 10000-14999: below the ephemeral range (32768+ here, read below) and
# apart from the fixed ports the local-runtime tests and benchmarks use (20000-29999).
BLOCK_RANGE = (10000, 15000)
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the kernel says is free now (it picks it from its ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def free_port_block(span: int) -> int:
    """The first of ``span`` consecutive free ports (for layouts such as LocalCluster's, where
    node i uses base+10*i .. base+10*i+2).

    Drawn below the kernel's ephemeral range, where no outgoing connection takes a port: on a
    busy machine (thousands of client connections) a run of free ports inside that range is rare.
    Each port is checked free by binding it."""
    low, high = BLOCK_RANGE[0], min(BLOCK_RANGE[1], _ephemeral_start()) - span
    rng = random.Random()
    for _ in range(ATTEMPTS):
        base = rng.randrange(low, high)
        if all(_bindable(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no block of {span} free ports found in {ATTEMPTS} attempts")


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
