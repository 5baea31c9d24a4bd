"""Repair a cluster by hand (``lockbench cluster heal``) or after a bench that died mid-fault.

Needs no memory of what was done: it removes our iptables chains (never the user's rules), stops
every lockbench helper (clock drivers, packet shapers) by its pidfile, puts clock offsets
back to ``+0`` (and a VM's stepped system clock back on real time) and sends SIGCONT to every
daemon with a pidfile in the node's data directory. Then
it checks that no chain of ours is left. On the local runtime the link proxy is healed instead of
iptables. Killed servers are not restarted here: only the run knows which ones it killed
(NemesisRunner.heal_all does that).
"""

from __future__ import annotations

import logging
import shlex

from lockbench.clock_preload import offset_path
from lockbench.protocols import Backend, Cluster, Node
from nemesis.clock import write_offset_command
from nemesis.fault import HealError
from nemesis.iptables import ALL_HOOKS, chain_present_command, remove_chain_command
from nemesis.links import heal_links, link_faults_of
from nemesis.remote import error_messages, on_nodes, run_checked, stop_all_helpers_command
from nemesis.system_clock import heal_command as system_clock_heal_command

log = logging.getLogger(__name__)


def heal_node_command(node: Node, *, network: bool = True) -> str:
    """One shell script that undoes every fault we can inject on the node, in a safe order.

    Helpers stop before the clock is reset, or a clock driver would write its offset again.
    ``network=False`` (runtimes without partitions or netem, whose nodes share the host's network)
    leaves iptables alone.
    """
    data_dir = shlex.quote(node.data_dir)
    offset = shlex.quote(offset_path(node))
    hooks = ALL_HOOKS if network else ()
    lines = [remove_chain_command(hook) for hook in hooks]
    lines.append(stop_all_helpers_command(node.data_dir))
    lines.append(f"if [ -e {offset} ]; then {write_offset_command(node, 0.0)}; fi")
    lines.append(system_clock_heal_command(node))  # a VM's own clock stepped back, sync restarted
    lines.append(
        f'for p in {data_dir}/*.pid; do [ -f "$p" ] || continue; '
        'pid=$(cat "$p" 2>/dev/null); [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null; done; true'
    )
    lines += [
        f"if {chain_present_command(hook)}; then echo 'chain {hook.chain} still present' >&2; "
        "exit 1; fi"
        for hook in hooks
    ]
    return "\n".join(lines)


def heal_cluster(cluster: Cluster, backend: Backend | None = None) -> list[str]:
    """Heal every node in parallel; returns one message per problem left, never raises."""
    try:
        nodes = list(cluster.nodes)
        links = link_faults_of(cluster)
        # With a link proxy (local runtime) the nodes share the host's network: leave iptables.
        network = links is None and bool({"partition", "netem"} & set(cluster.capabilities))
    except Exception as exc:
        return [f"cannot list the cluster's nodes: {exc}"]
    errors: list[str] = []
    if links is not None:
        try:
            heal_links(links)
        except HealError as exc:
            errors.extend(exc.errors)

    def heal(node: Node) -> None:
        run_checked(node, heal_node_command(node, network=network), "healing")
        if backend is not None:
            # The pidfile sweep above already resumed the bench's daemons; this covers backends
            # that keep their processes elsewhere. A node whose server is down cannot be resumed,
            # which is not a problem left behind, so this is only logged.
            try:
                backend.resume(node)
            except Exception as exc:
                log.debug("heal: %s: backend resume: %s", node.name, exc)

    errors += error_messages(on_nodes(nodes, heal))
    for error in errors:
        log.warning("heal: %s", error)
    return errors
