"""``lockctl``: the command line for a lockd cluster (acquire, release, status, watch, members).

A session lives as long as the command, so ``acquire`` holds the lock until interrupted (or for
``--hold`` seconds) and prints the fencing token. ``release`` is the operator's tool: it releases
a lock on behalf of the session that holds it (a stuck holder), read from ``owner`` unless given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import Sequence

from reference_impl.client.async_client import AsyncLockClient
from reference_impl.client.errors import (
    DefiniteError,
    IndeterminateError,
    LockServiceError,
    NotHolder,
)

DEFAULT_ENDPOINTS = "127.0.0.1:7000"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockctl",
        description="Talk to a lockd cluster. Endpoints are client ports (host:port), comma "
        "separated; any node works, writes follow the leader.",
        epilog="examples:\n"
        "  lockctl -e 10.77.1.11:7000,10.77.1.12:7000 acquire jobs/42 --hold 30\n"
        "  lockctl status            # role, term, leader and indices of every node\n"
        "  lockctl watch jobs/ --from-revision 1\n"
        "exit codes: 0 ok, 1 definite failure (e.g. lock busy), 2 usage, 3 outcome unknown",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-e",
        "--endpoints",
        default=os.environ.get("LOCKCTL_ENDPOINTS", DEFAULT_ENDPOINTS),
        help="comma-separated client endpoints (env LOCKCTL_ENDPOINTS; default %(default)s)",
    )
    parser.add_argument("--ttl", type=float, default=10.0, help="session TTL in seconds")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout")
    parser.add_argument(
        "--auth-token-file", help="file holding the cluster's client auth token, if it has one"
    )
    parser.add_argument(
        "--tls-ca", help="connect with TLS, trusting this CA file (for a TLS client port)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    acquire = sub.add_parser("acquire", help="acquire a lock, print its token, hold it")
    acquire.add_argument("name")
    acquire.add_argument("--wait", type=float, default=None, help="give up after this many s")
    acquire.add_argument("--shared", action="store_true", help="take a shared (read) lock")
    acquire.add_argument(
        "--hold", type=float, default=None, help="seconds to hold (default: until Ctrl-C)"
    )
    release = sub.add_parser("release", help="release a lock on behalf of its holder (operator)")
    release.add_argument("name")
    release.add_argument("--session", help="the holding session (default: the current holder)")
    owner = sub.add_parser("owner", help="who holds a lock (linearizable read)")
    owner.add_argument("name")
    owner.add_argument("--endpoint", help="read from this node (e.g. a follower)")
    sub.add_parser("status", help="role, term, leader and indices of every endpoint")
    sub.add_parser("members", help="the cluster's members and their client endpoints")
    watch = sub.add_parser("watch", help="print lock events under a prefix (JSON lines)")
    watch.add_argument("prefix", nargs="?", default="")
    watch.add_argument("--from-revision", type=int, default=0)
    watch.add_argument("--count", type=int, default=None, help="stop after this many events")
    return parser


async def run(args: argparse.Namespace) -> int:  # noqa: PLR0912 - one branch per subcommand
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    token = None
    if args.auth_token_file:
        with open(args.auth_token_file) as handle:
            token = handle.read().strip()
    context = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None
    client = await AsyncLockClient.connect(
        endpoints, ttl=args.ttl, timeout=args.timeout, auth_token=token, ssl=context
    )
    try:
        if args.command == "acquire":
            lease = await client.acquire(args.name, timeout=args.wait, shared=args.shared)
            print(
                json.dumps({"name": lease.name, "token": lease.token, "session": lease.session_id})
            )
            sys.stdout.flush()
            if args.hold is None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
            else:
                await asyncio.sleep(args.hold)
            await client.release(args.name)
        elif args.command == "release":
            session = args.session
            if session is None:
                owner = await client.owner(args.name)
                if not owner.holders:
                    raise NotHolder(f"{args.name} is not held")
                session = owner.holders[0].session
            await client.release_for(session, args.name)
            print(json.dumps({"name": args.name, "released": True, "session": session}))
        elif args.command == "owner":
            owner = await client.owner(args.name, endpoint=args.endpoint)
            holders = [_holder(h) for h in owner.holders]
            print(json.dumps({"name": owner.name, "holders": holders, "token": owner.token}))
        elif args.command == "status":
            for endpoint in endpoints:
                try:
                    print(json.dumps({"endpoint": endpoint, **await client.status(endpoint)}))
                except LockServiceError as exc:
                    print(json.dumps({"endpoint": endpoint, "error": str(exc)}))
        elif args.command == "members":
            print(json.dumps(await client.members(), indent=2))
        elif args.command == "watch":
            seen = 0
            async for event in client.watch(args.prefix, from_revision=args.from_revision):
                print(json.dumps(_holder(event)))
                sys.stdout.flush()
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    finally:
        await client.close()
    return 0


def _holder(value: object) -> dict[str, object]:
    slots = getattr(type(value), "__slots__", ())
    return {name: getattr(value, name) for name in slots}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except DefiniteError as exc:
        print(f"lockctl: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except IndeterminateError as exc:
        print(f"lockctl: outcome unknown ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 3
    except (ValueError, OSError) as exc:
        print(f"lockctl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
