"""Which asyncio event loop lockd runs on: uvloop when installed, the standard one otherwise.

uvloop (libuv, transports in C) cut lockd's CPU per acquire+release pair by 10-20% in
benchmarks/lockd_cpu.py (docs/performance.md, "lockd vs etcd, second pass"): most of a node's
time outside the lock service is the event loop itself (epoll, callbacks, socket writes). The
behaviour is the same on both loops, and the tests run lockd on both. A deployed node gets
uvloop from its system Python (Debian's python3-uvloop, which scripts/setup.sh and the Vagrant
provisioning install: the node venv sees the system's site-packages); without it the node runs
the standard loop.

With peer TLS lockd runs the standard loop: an inbound peer link is upgraded to TLS after the
connection is accepted (so a refused handshake can be reported), and on uvloop 0.23 that
server-side ``start_tls`` intermittently stalls until its timeout (4 of 5 runs of the real-lockd
peer TLS test failed that way; on the standard loop it refuses a plain dialler at once).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Final

CHOICES: Final = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(Exception):
    """``--event-loop uvloop`` was asked for where uvloop is not installed."""


def resolve(choice: str, *, peer_tls: bool = False) -> str:
    """The loop ``choice`` means here: "uvloop" or "asyncio"."""
    if choice not in CHOICES:
        raise EventLoopUnavailable(f"event loop must be one of {', '.join(CHOICES)}: {choice!r}")
    if peer_tls:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                "--event-loop uvloop cannot serve peer TLS (uvloop stalls the server-side TLS "
                "upgrade of a peer link); use --event-loop auto or asyncio"
            )
        return "asyncio"
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not have_uvloop:
        raise EventLoopUnavailable(
            "--event-loop uvloop: uvloop is not installed here (pip install uvloop), "
            "or use --event-loop asyncio"
        )
    if choice == "auto":
        return "uvloop" if have_uvloop else "asyncio"
    return choice


def run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main`` to completion on ``loop`` (a value of ``resolve``)."""
    if loop == "uvloop":
        import uvloop

        # Not uvloop.run: it came in uvloop 0.18, and a deployed node's uvloop may be Debian
        # bookworm's python3-uvloop 0.17 (through the node venv's system site-packages).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)
