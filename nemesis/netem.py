"""A bad network: delay with jitter, loss and reordering, per node or per link.

Packets a faulted node sends to the affected peers are queued by an iptables rule in our
``LOCKBENCH-NETEM`` chain to a shaper program on the node (nemesis/shaper.py), which releases them
late, drops or reorders them. It is a userspace netem: ``tc qdisc netem`` needs sch_netem, which
some kernels (this project's CI VMs) do not have, while NFQUEUE comes with netfilter. Traffic to
the control node (SSH) is never shaped, so the nemesis keeps its own link healthy.

Per node (``target``): everything the node sends to every other node. Per link (``links``): both
directions of each pair. Delay applies once per direction, so a round trip between a faulted
node and a healthy one grows by about ``delay_ms``; between two faulted nodes by twice that.
On the local runtime the cluster's link proxy shapes the peer links instead (nemesis.links).
"""

from __future__ import annotations

import random
import shlex
from pathlib import Path

from lockbench.protocols import Cluster, FaultAction, Node
from nemesis.fault import FaultTarget, HealError
from nemesis.iptables import (
    NETEM_HOOK,
    apply_rules_command,
    ensure_chain_command,
    queue_to_rule,
    remove_chain_command,
)
from nemesis.links import NodeOrLink, describe_links, heal_links, link_faults_of
from nemesis.remote import (
    NemesisActionError,
    NodeLocks,
    error_messages,
    helper_pidfile,
    on_nodes,
    raise_first,
    run_checked,
    start_helper,
    stop_helper_command,
)
from nemesis.spec import NetemOptions

SHAPER_SOURCE = (Path(__file__).with_name("shaper.py")).read_text(encoding="utf-8")
# NFQUEUE numbers 0..65535 are per network namespace; ours start here, one per nemesis entry.
QUEUE_BASE = 4242
SHAPER_GRACE_SECONDS = 10.0
BIND_WAIT_SECONDS = 5.0


def shaped_destinations(
    options: NetemOptions, target_nodes: tuple[str, ...], all_nodes: list[str]
) -> dict[str, list[str]]:
    """For each node, the peers whose packets from it get shaped."""
    destinations: dict[str, set[str]] = {}
    if options.links:
        for a, b in options.links:
            destinations.setdefault(a, set()).add(b)
            destinations.setdefault(b, set()).add(a)
    else:
        for name in target_nodes:
            destinations[name] = {peer for peer in all_nodes if peer != name}
    return {name: sorted(peers) for name, peers in sorted(destinations.items()) if peers}


class NetemNemesis:
    """Implements lockbench.protocols.Nemesis for one ``netem`` entry of the test file."""

    name = "netem"

    def __init__(
        self,
        cluster: Cluster,
        options: NetemOptions,
        index: int,
        locks: NodeLocks,
        rng: random.Random,
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.queue = QUEUE_BASE + index
        self.helper = f"shaper-{index}"
        self.tag = f"lockbench-{index}"
        self.locks = locks
        self.rng = rng
        self.active: dict[str, list[str]] = {}
        self.links = link_faults_of(cluster)
        self.shaped_links: list[NodeOrLink] = []

    def setup(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def invoke(self, f: str, target: object) -> FaultAction:
        if f == "start-netem":
            if not isinstance(target, FaultTarget):
                raise TypeError("start-netem needs a FaultTarget")
            return self._start(target)
        if f == "stop-netem":
            return self._stop()
        raise ValueError(f"netem nemesis cannot {f!r}")

    def _start_on_proxy(self, target: FaultTarget) -> FaultAction:
        assert self.links is not None
        options = self.options
        items: list[NodeOrLink] = list(target.nodes)
        if options.links:
            items = [link for a, b in options.links for link in ((a, b), (b, a))]
        self.shaped_links = items
        state = self.links.set_quality(
            items, delay_ms=options.delay_ms, jitter_ms=options.jitter_ms, loss=options.loss
        )
        return FaultAction(
            "start-netem",
            {
                "delay_ms": options.delay_ms,
                "jitter_ms": options.jitter_ms,
                "loss": options.loss,
                "via": "link proxy",
                "links": describe_links(state),
            },
        )

    def _start(self, target: FaultTarget) -> FaultAction:
        if self.links is not None:
            return self._start_on_proxy(target)
        if self.active:
            self._stop()
        options = self.options
        names = [node.name for node in self.cluster.nodes]
        destinations = shaped_destinations(options, target.nodes, names)
        seconds = target.hold_seconds + SHAPER_GRACE_SECONDS
        seeds = {name: self.rng.randrange(2**31) for name in destinations}
        rules = {
            name: [queue_to_rule(self.cluster.node(p).address, self.queue, self.tag) for p in peers]
            for name, peers in destinations.items()
        }

        def shape(node: Node) -> int:
            args = [str(self.queue), f"{options.delay_ms:g}", f"{options.jitter_ms:g}"]
            args += [f"{options.loss:g}", f"{options.reorder:g}", f"{options.duplicate:g}"]
            args.append(f"{seconds:.1f}")
            args.append(str(seeds[node.name]))
            with self.locks.lock(node.name):
                pid = start_helper(node, self.helper, SHAPER_SOURCE, args)
                self._wait_bound(node)
                command = f"{ensure_chain_command(NETEM_HOOK)} && "
                command += apply_rules_command("-A", rules[node.name])
                run_checked(node, command, "adding the netem queue rules")
            return pid

        self.active = dict(rules)
        pids = raise_first(on_nodes([self.cluster.node(n) for n in destinations], shape))
        return FaultAction(
            "start-netem",
            {
                "delay_ms": options.delay_ms,
                "jitter_ms": options.jitter_ms,
                "loss": options.loss,
                "reorder": options.reorder,
                "duplicate": options.duplicate,
                "links": {name: peers for name, peers in destinations.items()},
                "rules": {k: [f"-A {r}" for r in v] for k, v in rules.items()},
                "queue": self.queue,
                "shaper_pids": pids,
            },
        )

    def _wait_bound(self, node: Node) -> None:
        """The shaper prints ``bound`` once the kernel accepted its queue; or it died."""
        log = shlex.quote(f"{node.data_dir}/lockbench-{self.helper}.log")
        tries = int(BIND_WAIT_SECONDS / 0.1)
        command = (
            f"for i in $(seq {tries}); do grep -q 'bound' {log} && exit 0; sleep 0.1; done; "
            f"tail -n 3 {log} >&2; exit 1"
        )
        run_checked(node, command, f"binding NFQUEUE {self.queue}")

    def _stop(self) -> FaultAction:
        if self.links is not None:
            state = self.links.set_quality(self.shaped_links)
            self.shaped_links = []
            return FaultAction("stop-netem", {"via": "link proxy", "links": describe_links(state)})
        active, self.active = self.active, {}

        def mend(node: Node) -> None:
            command = apply_rules_command("-D", active[node.name]) + " && "
            command += stop_helper_command(helper_pidfile(node, self.helper))
            with self.locks.lock(node.name):
                run_checked(node, command, "removing the netem rules and shaper")

        results = on_nodes([self.cluster.node(n) for n in active], mend)
        self.active = {n: active[n] for n, r in results.items() if isinstance(r, Exception)}
        errors = error_messages(results)
        if errors:
            raise NemesisActionError("; ".join(errors))
        return FaultAction(
            "stop-netem", {"rules": {k: [f"-D {r}" for r in v] for k, v in active.items()}}
        )

    def heal(self) -> FaultAction | None:
        """Remove the whole netem chain and this entry's shapers on every node."""
        if self.links is not None:
            heal_links(self.links)
            self.shaped_links = []
            return FaultAction("stop-netem", {"via": "link proxy", "links": {}})

        def remove(node: Node) -> None:
            command = remove_chain_command(NETEM_HOOK) + "\n"
            command += stop_helper_command(helper_pidfile(node, self.helper))
            with self.locks.lock(node.name):
                run_checked(node, command, "removing the netem chain and shaper")

        errors = error_messages(on_nodes(list(self.cluster.nodes), remove))
        if errors:
            raise HealError(errors)
        self.active = {}
        return FaultAction("stop-netem", {"removed_chain": NETEM_HOOK.chain})

    def teardown(self) -> None:
        self.heal()
