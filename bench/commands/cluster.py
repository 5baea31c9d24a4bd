"""``lockbench cluster up|status|down|deploy|heal``: manage the five nodes a test runs on."""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from pathlib import Path
from typing import Any

from bench.cluster import ALL_FAULTS, ClusterHandle, load_inventory, open_cluster
from bench.cluster.runtimes import (
    cluster_dir_for,
    cluster_down,
    cluster_up,
    default_runtime,
    load_cluster_inventory,
)
from bench.cluster.status import cluster_status
from bench.commands import summary
from bench.runner.components import create_backend
from lockbench.errors import EXIT_CLUSTER, BenchError
from lockbench.parallel import on_each_node
from lockbench.protocols import Backend
from nemesis.heal import heal_cluster

RUNTIMES = ("netns", "local", "vagrant", "ssh")


def _cluster_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "dir", None):
        return Path(args.dir)
    return cluster_dir_for(args.name)


def _open(args: argparse.Namespace) -> ClusterHandle:
    inventory_file = getattr(args, "inventory", None)
    if inventory_file:
        return open_cluster(load_inventory(Path(inventory_file)))
    return open_cluster(load_cluster_inventory(_cluster_dir(args)))


def _netns_prefix(name: str) -> str:
    """``lb`` for the default cluster, ``lb<name>`` (shortened) for others: one per cluster."""
    if name == "default":
        return "lb"
    return "lb" + re.sub(r"[^A-Za-z0-9]", "", name)[:8]


def cmd_up(args: argparse.Namespace) -> int:
    runtime = args.runtime or default_runtime()
    cluster_dir = _cluster_dir(args)
    started = time.monotonic()
    inventory = cluster_up(
        runtime,
        cluster_dir,
        subnet=args.subnet,
        prefix=args.prefix or _netns_prefix(args.name),
        inventory=Path(args.inventory) if args.inventory else None,
        nodes=args.nodes,
        port_offset=args.port_offset,
    )
    with open_cluster(inventory) as cluster:
        capabilities = ", ".join(sorted(cluster.capabilities))
        lacking = ALL_FAULTS - cluster.capabilities
    print(
        f"{runtime} cluster up in {time.monotonic() - started:.1f} s: "
        f"{', '.join(f'{n.name}={n.address}' for n in inventory.nodes)}"
    )
    print(f"inventory: {inventory.cluster_dir / 'inventory.yaml'}")
    print(f"faults this runtime can inject: {capabilities}")
    if runtime == "local":
        why = {
            "partition": "partition (no room for the link proxy's ports)",
            "netem": "netem (no room for the link proxy's ports)",
            "clock": "clock (no C compiler to build the wall-clock library)",
        }
        if lacking:
            print(f"cannot inject: {', '.join(why.get(f, f) for f in sorted(lacking))}")
        else:
            print("partitions and netem go through the link proxy (one shared loopback)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _open(args) as cluster:
        statuses = cluster_status(cluster)
        print(f"runtime {cluster.runtime}; faults: {', '.join(sorted(cluster.capabilities))}")
    down = 0
    for status in statuses:
        if not status.reachable:
            down += 1
            print(f"{status.name:6} {status.address:15} UNREACHABLE  {status.error}")
            continue
        daemons = ", ".join(f"{d.name} pid {d.pid} {d.state}" for d in status.daemons)
        print(
            f"{status.name:6} {status.address:15} ok {status.latency_ms:6.0f} ms  "
            f"{daemons or 'nothing running'}"
        )
    return EXIT_CLUSTER if down else 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster_dir = _cluster_dir(args)
    started = time.monotonic()
    removed = cluster_down(cluster_dir, destroy=args.destroy)
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print(f"nothing to remove in {cluster_dir}")
    print(f"down in {time.monotonic() - started:.1f} s")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    backend = create_backend(args.backend, {})
    with _open(args) as cluster:
        started = time.monotonic()
        backend.deploy(cluster)
        print(
            f"{backend.name} deployed to {len(cluster.nodes)} node(s) in "
            f"{time.monotonic() - started:.1f} s"
        )
        if args.start:
            _start_everywhere(backend, cluster)
            print(f"started {backend.name} on {', '.join(n.name for n in cluster.nodes)}")
    return 0


def _start_everywhere(backend: Backend, cluster: ClusterHandle) -> None:
    """Start on every node; if any node fails, stop the others too: nothing half-started."""
    try:
        on_each_node(f"starting {backend.name}", cluster.nodes, backend.start)
    except BenchError:
        for node in cluster.nodes:
            with contextlib.suppress(Exception):
                backend.stop(node)
        raise


def cmd_heal(args: argparse.Namespace) -> int:
    with _open(args) as cluster:
        problems = heal_cluster(cluster)
    for problem in problems:
        print(f"not healed: {problem}")
    if not problems:
        print("healed: no partitions, shaping, clock offsets or paused daemons left")
    return EXIT_CLUSTER if problems else 0


def _add_target(parser: argparse.ArgumentParser, *, inventory: bool = True) -> None:
    parser.add_argument("--name", default="default", help="cluster name (dir .clusters/NAME)")
    parser.add_argument("--dir", help="cluster directory (overrides --name)")
    if inventory:
        parser.add_argument("--inventory", help="use this inventory file instead of a named one")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help=summary("cluster"),
        description="Manage the nodes a test runs on (docs/runtimes.md).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="create nodes and write the inventory")
    _add_target(up, inventory=False)
    up.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="netns (default when root on Linux), local (default otherwise), vagrant, ssh",
    )
    up.add_argument(
        "--subnet",
        help="netns: the nodes' /24 (default 10.77.0.0/24); vagrant: the VMs' network "
        "(default 10.77.12.0/24; the /24 after it links the control node to it)",
    )
    up.add_argument(
        "--prefix", help="netns, vagrant: namespace/interface name prefix (default lb...)"
    )
    up.add_argument("--nodes", type=int, default=5, help="how many nodes (default 5)")
    up.add_argument("--inventory", help="ssh: the inventory file listing your hosts")
    up.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="local: added to every port of n1 (node i adds another 10*(i-1))",
    )
    up.set_defaults(func=cmd_up)

    status = actions.add_parser("status", help="each node, its reachability, what runs on it")
    _add_target(status)
    status.set_defaults(func=cmd_status)

    down = actions.add_parser("down", help="remove everything `up` made (or halt VMs)")
    _add_target(down, inventory=False)
    down.add_argument("--destroy", action="store_true", help="vagrant: destroy, not halt")
    down.set_defaults(func=cmd_down)

    deploy = actions.add_parser("deploy", help="install the backend on every node")
    _add_target(deploy)
    deploy.add_argument("--backend", default="reference", help="backend name (default reference)")
    deploy.add_argument("--start", action="store_true", help="also start it on every node")
    deploy.set_defaults(func=cmd_deploy)

    heal = actions.add_parser("heal", help="undo every fault the nemeses can leave behind")
    _add_target(heal)
    heal.set_defaults(func=cmd_heal)
