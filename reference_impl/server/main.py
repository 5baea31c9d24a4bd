"""``lockd``: the reference lock server (one node of a Raft group).

Runs the Replica, the client port, the HTTP port and the leader's timers in one asyncio loop.
Never calls ``time.sleep``: lockd runs under libfaketime in the clock tests (MACHINE-NOTES.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from reference_impl.raft.config import RaftConfig
from reference_impl.raft.errors import RaftError
from reference_impl.server import event_loop
from reference_impl.server.client_server import ClientServer
from reference_impl.server.config import (
    UNSAFE_SWITCHES,
    ServerConfig,
    ServerConfigError,
    config_from_mapping,
    load_config,
    peer_tls_config,
    read_auth_token,
    tls_config,
    with_overrides,
)
from reference_impl.server.http_server import HttpServer
from reference_impl.server.metrics import Registry
from reference_impl.server.peer_tls import peer_tls_contexts
from reference_impl.server.raft_metrics import register_replica_metrics
from reference_impl.server.replica import Replica
from reference_impl.server.service import LockService

log = logging.getLogger("lockd")

EXAMPLE = """\
example config (lockd --config n1.yaml):
  id: n1
  data_dir: /var/lib/lockbench/n1
  members:
    n1: {host: 10.77.1.11, peer_port: 7001, client_port: 7000, http_port: 7080}
    n2: {host: 10.77.1.12, peer_port: 7001, client_port: 7000, http_port: 7080}
    n3: {host: 10.77.1.13, peer_port: 7001, client_port: 7000, http_port: 7080}
  tick_ms: 50
  fsync: true
  unsafe: []

without a file: lockd --id n1 --data-dir /tmp/n1 \\
  --member n1=127.0.0.1:17001:17000:17080 --member n2=... --member n3=...

unsafe switches (self-validation only; each injects a known bug the bench must catch):
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockd",
        description="Raft-replicated lock server: sessions, locks with fencing tokens, watches, "
        "client elections. See docs/reference-server.md and docs/protocol.md.",
        epilog=EXAMPLE
        + "\n".join(f"  --unsafe-{name}: {text}" for name, text in UNSAFE_SWITCHES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config file (flags override it)")
    parser.add_argument("--id", help="this node's id (a key of members)")
    parser.add_argument("--data-dir", type=Path, help="directory for the WAL and snapshots")
    parser.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="ID=HOST:PEER:CLIENT:HTTP",
        help="a cluster member (repeat for each, same order on every node); instead of --config",
    )
    parser.add_argument("--listen-host", help="address to bind (default: this member's host)")
    parser.add_argument("--tick-ms", type=int, help="Raft tick in ms (default 50)")
    parser.add_argument("--lock-delay-ms", type=int, help="lock-delay after a session expires")
    parser.add_argument("--auth-token-file", help="require clients to present this token")
    parser.add_argument("--tls-cert", help="serve the client port over TLS with this cert")
    parser.add_argument("--tls-key", help="private key of --tls-cert")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    parser.add_argument(
        "--peer-tls-cert", help="mutual TLS on the Raft peer links: this node's certificate"
    )
    parser.add_argument("--peer-tls-key", help="private key of --peer-tls-cert")
    parser.add_argument("--peer-tls-ca", help="CA that signed every node's peer certificate")
    parser.add_argument("--pidfile", type=Path, help="write the process id here")
    parser.add_argument("--log-file", type=Path, help="log here instead of stderr")
    parser.add_argument(
        "--event-loop",
        choices=event_loop.CHOICES,
        default="auto",
        help="asyncio event loop: uvloop if installed (auto, the default), or the standard one",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    for name, text in UNSAFE_SWITCHES.items():
        parser.add_argument(
            f"--unsafe-{name}",
            action="store_true",
            help=f"UNSAFE, for self-validation only: {text.split(' (')[0]}",
        )
    return parser


def _parse_member(spec: str) -> tuple[str, dict[str, object]]:
    try:
        node_id, address = spec.split("=", 1)
        host, peer, client, http = address.rsplit(":", 3)
        return node_id, {
            "host": host,
            "peer_port": int(peer),
            "client_port": int(client),
            "http_port": int(http),
        }
    except ValueError as exc:
        raise ServerConfigError(
            f"--member {spec!r}: expected ID=HOST:PEER_PORT:CLIENT_PORT:HTTP_PORT"
        ) from exc


def resolve_config(args: argparse.Namespace) -> ServerConfig:
    unsafe = [name for name in UNSAFE_SWITCHES if getattr(args, f"unsafe_{name.replace('-', '_')}")]
    if args.config is not None:
        config = load_config(args.config)
    else:
        if not args.member or args.id is None or args.data_dir is None:
            raise ServerConfigError(
                "give --config FILE, or --id, --data-dir and one --member per node"
            )
        raw: dict[str, object] = {
            "id": args.id,
            "data_dir": str(args.data_dir),
            "members": dict(_parse_member(m) for m in args.member),
        }
        config = config_from_mapping(raw, source="flags")
    tls = config.tls
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ServerConfigError("--tls-cert and --tls-key go together")
        tls = tls_config(args.tls_cert, args.tls_key, args.tls_client_ca)
    auth_token = read_auth_token(args.auth_token_file) if args.auth_token_file else None
    peer_tls_flags = {"cert": args.peer_tls_cert, "key": args.peer_tls_key, "ca": args.peer_tls_ca}
    peer_tls = config.peer_tls
    if any(peer_tls_flags.values()):
        missing = [f"--peer-tls-{key}" for key, value in peer_tls_flags.items() if not value]
        if missing:
            raise ServerConfigError(
                "--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together (mutual TLS); "
                f"missing {', '.join(missing)}"
            )
        peer_tls = peer_tls_config(peer_tls_flags)
    return with_overrides(
        config,
        id=args.id,
        data_dir=args.data_dir,
        listen_host=args.listen_host,
        tick_ms=args.tick_ms,
        lock_delay_ms=args.lock_delay_ms,
        unsafe=unsafe or None,
        log_file=args.log_file,
        pidfile=args.pidfile,
        tls=tls,
        peer_tls=peer_tls,
        auth_token=auth_token,
    )


def server_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls.cert, config.tls.key)
        if config.tls.client_ca is not None:
            context.load_verify_locations(config.tls.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(f"tls: cannot load certificate/key: {exc}") from exc
    return context


class Lockd:
    """The whole node: wires config, service, replica and the two listeners together."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = Registry()
        self.service = LockService(config, self.registry)
        peers = {node_id: (m.host, m.peer_port) for node_id, m in config.members.items()}
        raft_config = RaftConfig(
            config.id,
            tuple(config.members),
            check_quorum=not config.is_unsafe("no-check-quorum"),
        )
        self.replica = Replica(
            config.id,
            peers,
            config.data_dir / "raft",
            self.service,
            config=raft_config,
            tick_seconds=config.tick_ms / 1000.0,
            fsync=config.fsync,
            on_leader_change=self.service.leader_changed,
            snapshot_every=config.snapshot_entries,
            wal_zeroed_tail_bytes=config.wal_zeroed_tail_bytes,
            async_leader_writes=config.leader_writes == "background",
            unsafe_no_fsync=config.is_unsafe("no-fsync"),
            unsafe_no_check_quorum=config.is_unsafe("no-check-quorum"),
            peer_tls=peer_tls_contexts(config.peer_tls, config.id) if config.peer_tls else None,
        )
        self.service.attach(self.replica)
        self.clients = ClientServer(
            self.service,
            self.registry,
            auth_token=config.auth_token,
            ssl_context=server_ssl_context(config),
        )
        register_replica_metrics(self.registry, self.replica)
        self.http = HttpServer(self.service, self.registry)

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.replica.start()
        # Entries up to the durable commit index are replays of what this node applied before.
        self.service.machine.replayed_until = self.replica.commit_index
        await self.service.start()
        me = self.config.me
        await self.clients.start(self.config.bind_host, me.client_port)
        await self.http.start(self.config.bind_host, me.http_port)
        log.info(
            "%s serving clients on %s:%d, http on %s:%d",
            self.config.id,
            self.config.bind_host,
            me.client_port,
            self.config.bind_host,
            me.http_port,
        )

    async def stop(self) -> None:
        await self.clients.stop()
        await self.http.stop()
        await self.service.stop()
        await self.replica.stop()


GC_THRESHOLDS = (50_000, 20, 100)
"""lockd keeps ~10^5 long-lived small objects (sessions, locks, holders). With CPython's default
gen-0 threshold of 700 the collector runs every few hundred requests and its older generations
walk the whole lock table; a larger threshold cut apply time by ~40% in the scale benchmark."""


async def serve(config: ServerConfig) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    node = Lockd(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await node.start()
    try:
        await stop.wait()
    finally:
        log.info("%s shutting down", config.id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.stop(), 10.0)


def setup_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
        setup_logging(args.log_level, config.log_file)
        loop = event_loop.resolve(args.event_loop, peer_tls=config.peer_tls is not None)
    except (ServerConfigError, ValueError, OSError, event_loop.EventLoopUnavailable) as exc:
        print(f"lockd: {exc}", file=sys.stderr)
        return 2
    for name in sorted(config.unsafe):
        banner = f"UNSAFE MODE --unsafe-{name}: {UNSAFE_SWITCHES[name]}. NOT FOR REAL USE."
        log.warning("!" * 20 + " " + banner + " " + "!" * 20)
        print(f"lockd: WARNING: {banner}", file=sys.stderr)
    if config.pidfile is not None:
        config.pidfile.write_text(f"{os.getpid()}\n")
    try:
        log.info("lockd %s: %s event loop", config.id, loop)
        event_loop.run(serve(config), loop)
    except (ServerConfigError, RaftError, OSError) as exc:
        log.error("lockd %s failed: %s", config.id, exc)
        print(f"lockd: {exc}", file=sys.stderr)
        return 1
    finally:
        if config.pidfile is not None:
            with contextlib.suppress(OSError):
                config.pidfile.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
