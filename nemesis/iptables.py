"""Our own iptables chains on each node, so healing removes only our rules.

Partitions live in ``LOCKBENCH`` (jumped to from INPUT: a node drops what it must not hear, as in
Jepsen). The bad-network shaper's queue rules live in ``LOCKBENCH-NETEM`` (jumped to from OUTPUT).
Nothing here flushes a built-in chain, so the user's firewall is never touched. ``-w`` waits for
the xtables lock instead of failing when another tool holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_CHAIN = "LOCKBENCH"
NETEM_CHAIN = "LOCKBENCH-NETEM"
IPTABLES = "iptables -w"


@dataclass(frozen=True, slots=True)
class ChainHook:
    """A chain of ours and the built-in chain that jumps to it."""

    chain: str
    hook: str


PARTITION_HOOK = ChainHook(PARTITION_CHAIN, "INPUT")
NETEM_HOOK = ChainHook(NETEM_CHAIN, "OUTPUT")
ALL_HOOKS: tuple[ChainHook, ...] = (PARTITION_HOOK, NETEM_HOOK)


def ensure_chain_command(hook: ChainHook) -> str:
    """Create the chain if missing and jump to it first thing from its hook (idempotent)."""
    return (
        f"{{ {IPTABLES} -n -L {hook.chain} >/dev/null 2>&1 || {IPTABLES} -N {hook.chain}; }} && "
        f"{{ {IPTABLES} -C {hook.hook} -j {hook.chain} 2>/dev/null || "
        f"{IPTABLES} -I {hook.hook} 1 -j {hook.chain}; }}"
    )


def remove_chain_command(hook: ChainHook) -> str:
    """Remove every jump to the chain, flush it and delete it; succeeds if it never existed."""
    return (
        f"while {IPTABLES} -D {hook.hook} -j {hook.chain} 2>/dev/null; do :; done; "
        f"if {IPTABLES} -n -L {hook.chain} >/dev/null 2>&1; then "
        f"{IPTABLES} -F {hook.chain} && {IPTABLES} -X {hook.chain}; fi"
    )


def chain_present_command(hook: ChainHook) -> str:
    """Exit 0 when the chain or a jump to it is still there (used to verify a heal)."""
    return (
        f"{IPTABLES} -n -L {hook.chain} >/dev/null 2>&1 || "
        f"{IPTABLES} -C {hook.hook} -j {hook.chain} 2>/dev/null"
    )


def drop_from_rule(source_address: str, tag: str) -> str:
    """The rule (without -A/-D) that makes a node deaf to one peer."""
    return f"{PARTITION_CHAIN} -s {source_address}/32 -m comment --comment {tag} -j DROP"


# The shaper's duplicates carry this mark (nemesis/shaper.py) and must not be queued again.
DUPLICATE_MARK = 0x4C42


def queue_to_rule(destination_address: str, queue: int, tag: str) -> str:
    """The rule that hands packets for one peer to the shaper's queue.

    ``--queue-bypass`` lets packets through when no shaper listens, so a dead shaper never turns
    into a partition; the shaper's own duplicates (marked) pass straight through.
    """
    return (
        f"{NETEM_CHAIN} -d {destination_address}/32 -m mark ! --mark {DUPLICATE_MARK:#x} "
        f"-m comment --comment {tag} -j NFQUEUE --queue-num {queue} --queue-bypass"
    )


def apply_rules_command(action: str, rules: list[str]) -> str:
    """``action`` is -A or -D; the rules run in order and the first failure stops the rest."""
    if action not in ("-A", "-D"):
        raise ValueError(f"unknown iptables action {action!r}")
    return " && ".join(f"{IPTABLES} {action} {rule}" for rule in rules) or "true"
