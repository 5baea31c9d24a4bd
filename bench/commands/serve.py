"""``lockbench serve``: browse the store read-only over HTTP (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from bench.commands import summary
from lockbench.errors import EXIT_VALID, ConfigError
from reports.server import make_server

DEFAULT_PORT = 8080
log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help=summary("serve"),
        description=(
            "Serve the store read-only: an index of runs (name, time, backend, workload, "
            "nemesis, verdict, ops, duration; filterable, newest first) linking to each run's "
            "report, which is rendered on the fly if it was never written."
        ),
    )
    parser.add_argument("--store", type=Path, default=Path("store"), help="store directory")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8080)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: only this machine can connect)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store: Path = args.store
    if not store.is_dir():
        raise ConfigError(f"{store}: no such store directory; pass --store DIR or run a test first")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be between 0 and 65535")
    try:
        server = make_server(store, args.host, args.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    url = f"http://{args.host}:{server.server_port}/"
    print(f"serving {store.resolve()} on {url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
    return EXIT_VALID
