"""lbclock, the bench's wall-clock-only preload library: build it, put it on nodes, arm nodes.

Clock faults move the wall clock a server sees by preloading ``lbclock.c`` (compiled here with
gcc, cached by its source's digest) into the server and rewriting a per-node offset file. Why not
libfaketime, and what the library fakes, is in the C file's header and docs/nemeses.md.

A node is *armed* for clock faults when its offset file ``{data_dir}/clock.offset`` exists: then
``lockbench.daemon.start_daemon`` starts daemons under the library; otherwise it starts them
plain, so a test without a clock fault never runs a server under a clock-faking preload. The
runner arms the nodes of a test that has a clock fault and disarms the others (``arm_clock``,
``disarm_clock``); arming copies the library to the node and checks that it moves ``date`` there.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from lockbench.errors import ClusterError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node

LIBRARY_SOURCE = Path(__file__).with_name("lbclock.c")
OFFSET_ENV = "LOCKBENCH_CLOCK_OFFSET_FILE"
REFRESH_ENV = "LOCKBENCH_CLOCK_REFRESH_MS"
# The library re-reads the offset file at most this often (its default; see lbclock.c).
REFRESH_MS = 20
CLOCK_OFFSET_FILE = "clock.offset"
NODE_LIBRARY = "lockbench-clock.so"
CACHE_ENV = "LOCKBENCH_CACHE_DIR"
COMPILER_FLAGS = ("-O2", "-Wall", "-shared", "-fPIC")
# The arming self-test: a fresh process under the library with this offset must see it.
SELF_TEST_OFFSET_S = 3600


class ClockLibraryError(ClusterError):
    """The wall-clock library could not be built, installed, or does not move a node's clock."""


def offset_path(node: Node) -> str:
    """The offset file the clock nemesis writes (signed seconds, e.g. ``+0.500000``)."""
    return f"{node.data_dir}/{CLOCK_OFFSET_FILE}"


def node_library_path(node: Node) -> str:
    return f"{node.data_dir}/{NODE_LIBRARY}"


def preload_environment(node: Node) -> dict[str, str]:
    """The environment that puts a process on ``node`` on the node's faulted wall clock."""
    return {"LD_PRELOAD": node_library_path(node), OFFSET_ENV: offset_path(node)}


@cache
def source_digest() -> str:
    return hashlib.sha256(LIBRARY_SOURCE.read_bytes()).hexdigest()[:16]


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockbench"


def cached_library() -> Path:
    """Where the library built from the current source lives (it may not be built yet)."""
    return cache_dir() / f"lbclock-{source_digest()}.so"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "gcc"))


def can_build_library() -> bool:
    """True when the library is built or can be (decides the local runtime's clock capability)."""
    return cached_library().exists() or compiler() is not None


def build_library() -> Path:
    """The compiled library, built on first use and cached by the source's digest."""
    target = cached_library()
    if target.exists():
        return target
    cc = compiler()
    if cc is None:
        raise ClockLibraryError(
            "clock faults need a C compiler to build the wall-clock library "
            f"({LIBRARY_SOURCE.name}): install gcc, or leave clock faults out of the test"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [cc, *COMPILER_FLAGS, "-o", str(built), str(LIBRARY_SOURCE), "-ldl", "-lpthread"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ClockLibraryError(
                f"building the wall-clock library failed ({' '.join(command)}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        os.replace(built, target)
    return target


def self_test_command(node: Node) -> str:
    """Prints the difference (s) between ``date`` under the library at +1 h and plain ``date``."""
    library = shlex.quote(node_library_path(node))
    return (
        f't=$(mktemp) && echo +{SELF_TEST_OFFSET_S} > "$t" && a=$(date +%s) && '
        f'b=$(LD_PRELOAD={library} {OFFSET_ENV}="$t" date +%s); rc=$?; rm -f "$t"; '
        '[ "$rc" = 0 ] && echo $((b - a))'
    )


def install_library(node: Node, library: Path) -> None:
    """Copy the library to the node atomically: a running server keeps its mapped copy."""
    target = node_library_path(node)
    temporary = f"{target}.{os.getpid()}.tmp"
    node.run(f"mkdir -p {shlex.quote(node.data_dir)}")
    node.put(library, temporary)
    node.run(
        f"chmod 755 {shlex.quote(temporary)} && mv -f {shlex.quote(temporary)} "
        f"{shlex.quote(target)}"
    )


def arm_node(node: Node, library: Path) -> None:
    """Install the library, check it moves the node's clock, and write offset ``+0``."""
    install_library(node, library)
    result = node.run(self_test_command(node), check=False)
    seen = result.stdout.strip().splitlines()[-1:] or [""]
    try:
        moved = int(seen[0])
    except ValueError:
        moved = None
    if moved is None or abs(moved - SELF_TEST_OFFSET_S) > 2:
        raise ClockLibraryError(
            f"{node.name}: the wall-clock library does not move the clock of a process there "
            f"(expected {SELF_TEST_OFFSET_S} s, saw {seen[0] or 'nothing'}): "
            f"{result.stderr.strip()[-500:]}"
        )
    path = shlex.quote(offset_path(node))
    node.run(f"printf '+0\\n' > {path}.tmp && mv -f {path}.tmp {path}")


# Runtimes whose nodes have a kernel clock of their own (VMs): clock faults step that clock
# (nemesis.system_clock) and no server runs under the library.
SYSTEM_CLOCK_RUNTIMES: frozenset[str] = frozenset({"vagrant"})


def steps_system_clock(runtime: str) -> bool:
    """True where the clock nemesis steps each node's own system clock instead of an offset."""
    return runtime in SYSTEM_CLOCK_RUNTIMES


def arm_clock(cluster: Cluster) -> None:
    """Make every node ready for clock faults (before its servers start); see module docstring.
    Nodes with their own clock (``steps_system_clock``) need no library: they are disarmed."""
    if steps_system_clock(cluster.runtime):
        disarm_clock(cluster)
        return
    library = build_library()
    on_each_node("arming clock faults", list(cluster.nodes), lambda node: arm_node(node, library))


def disarm_node(node: Node) -> None:
    node.run(f"rm -f {shlex.quote(offset_path(node))}")


def disarm_clock(cluster: Cluster) -> None:
    """Servers started from now on run on the real clock, without any preload."""
    on_each_node("disarming clock faults", list(cluster.nodes), disarm_node)
