"""Clock faults on nodes with a kernel clock of their own (VMs): step the system clock.

On the netns and local runtimes every node reads this machine's clock, so clock faults move a
per-process offset through the bench's wall-clock library. A VM has its own kernel clock: there
the clock nemesis steps it (nemesis/system_clock_step.py, as root through the node's sudo), which
reaches every process on the VM, Go and static programs (etcd) included, exactly as a real clock
step does. Time synchronisation is stopped for the window and restarted when the offset goes back
to 0; what is in force lives in ``{data_dir}/clock.system`` on the node, so a heal after a crash
can step back (``heal_command``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockbench.protocols import Node
from nemesis.remote import run_checked

STEP_SOURCE = Path(__file__).with_name("system_clock_step.py").read_text(encoding="utf-8")
STATE_NAME = "clock.system"
STATE_PREFIX = "SYSCLOCK "
NOW_PREFIX = "SYSCLOCK_NOW "
# Stopping or starting time sync takes seconds on a software-emulated VM of a busy machine.
STEP_TIMEOUT_S = 120.0


def state_path(node: Node) -> str:
    return f"{node.data_dir}/{STATE_NAME}"


def step_command(node: Node, offset_ms: float) -> str:
    args = [state_path(node), f"{offset_ms:.3f}"]
    return f"mkdir -p {shlex.quote(node.data_dir)} && python3 -c " + " ".join(
        shlex.quote(a) for a in [STEP_SOURCE, *args]
    )


def heal_command(node: Node) -> str:
    """Step back to real time and restart time sync, if a step is in force (else nothing)."""
    return f"if [ -e {shlex.quote(state_path(node))} ]; then {step_command(node, 0.0)}; fi"


def state_command(node: Node) -> str:
    """When a step is in force: ``SYSCLOCK <state JSON>``, then ``SYSCLOCK_NOW <ms>``: realtime
    minus boottime now, both read in one process (two processes would be apart by an exec,
    which takes a good part of a second on a software-emulated VM)."""
    path = shlex.quote(state_path(node))
    now = shlex.quote(
        "import time; r = time.clock_gettime(time.CLOCK_REALTIME); "
        "print((r - time.clock_gettime(time.CLOCK_BOOTTIME)) * 1000.0)"
    )
    return (
        f'if [ -e {path} ]; then echo "{STATE_PREFIX}$(cat {path})"; '
        f'echo "{NOW_PREFIX}$(python3 -c {now})"; fi'
    )


@dataclass(frozen=True, slots=True)
class StepInForce:
    """A node's stepped clock: what the nemesis set and what the node's clocks show now."""

    set_ms: float
    measured_ms: float


def parse_state(lines: list[str]) -> StepInForce | None:
    """From state_command's output; ``measured_ms`` = (realtime - boottime) now - ``base_ms``."""
    state: Mapping[str, Any] | None = None
    now_ms: float | None = None
    for line in lines:
        if line.startswith(STATE_PREFIX):
            state = json.loads(line[len(STATE_PREFIX) :])
        elif line.startswith(NOW_PREFIX):
            now_ms = float(line[len(NOW_PREFIX) :])
    if state is None or now_ms is None:
        return None
    return StepInForce(float(state["offset_ms"]), now_ms - float(state["base_ms"]))


def step_to(node: Node, offset_ms: float) -> Mapping[str, Any]:
    """Step ``node``'s clock to ``offset_ms`` from real time (0: back, and time sync restarted)."""
    command = step_command(node, offset_ms)
    result = run_checked(node, command, "stepping the clock", timeout=STEP_TIMEOUT_S)
    answer: Mapping[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer
