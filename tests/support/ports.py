"""Free TCP ports on loopback, asked of the kernel instead of hard-coded, so test runs (and
helpers running their own suites beside each other) do not collide on a fixed number."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"
ATTEMPTS = 50


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
    node i uses base+10*i .. base+10*i+2)."""
    for _ in range(ATTEMPTS):
        base = free_port()
        if base + span < 65536 and all(_bindable(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no block of {span} free ports found in {ATTEMPTS} attempts")
