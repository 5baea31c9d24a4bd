"""The bench's small protocols (after Jepsen's db/client/nemesis/checker/generator).

A test is plain data (a YAML file) that names one implementation of each. Implementations are
plug-ins found by entry point (lockbench.plugins): runtimes in ``bench.cluster``, backends in
``bench.backends``, faults in ``nemesis``, workloads in ``workloads``, checkers in
``bench.checker``, report panels in ``reports``; a third-party package adds its own the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

# The checker contract has its own module (lockbench/checks.py); it is re-exported here so the
# contract stays one import for a plug-in.
from lockbench.checks import VERDICT_RANK as VERDICT_RANK
from lockbench.checks import Anomaly as Anomaly
from lockbench.checks import Checker as Checker
from lockbench.checks import CheckResult as CheckResult
from lockbench.checks import HistoryAccumulator as HistoryAccumulator
from lockbench.checks import KeyedChecker as KeyedChecker
from lockbench.checks import StreamingChecker as StreamingChecker
from lockbench.checks import Verdict as Verdict
from lockbench.checks import combine_verdicts as combine_verdicts
from lockbench.history import Call, Op

# ---------------------------------------------------------------------------------------------
# Nodes and clusters


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command run on a node returned."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class NodeError(RuntimeError):
    """A command or transfer on a node failed; the message names the node and the cause."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


@runtime_checkable
class Node(Protocol):
    """One machine of the cluster, reached the way the runtime reaches it (SSH for real ones)."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str:
        """The address other nodes and the control node use to reach this node's services."""
        ...

    @property
    def data_dir(self) -> str:
        """A directory on the node the bench owns (server data, logs, pidfiles, offset files)."""
        ...

    def run(self, command: str, *, timeout: float = 30.0, check: bool = True) -> CommandResult:
        """Run a shell command on the node; with ``check`` a non-zero exit raises NodeError."""
        ...

    def put(self, local: Path, remote: str) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...


def on_control_host(node: Node) -> bool:
    """True when the node is this machine itself (the ``local`` runtime): its files are the
    control node's files, so a backend may run its server from this interpreter and sources
    instead of deploying. A node says so with a true ``on_control_host`` attribute."""
    return getattr(node, "on_control_host", False) is True


Fault: TypeAlias = Literal["partition", "kill", "pause", "clock", "netem", "power-loss"]


@runtime_checkable
class Cluster(Protocol):
    """A set of nodes plus what the runtime can do to them."""

    @property
    def runtime(self) -> str: ...

    @property
    def nodes(self) -> Sequence[Node]: ...

    @property
    def capabilities(self) -> frozenset[str]:
        """The faults this runtime can inject (a subset of the Fault names)."""
        ...

    def node(self, name: str) -> Node: ...


# ---------------------------------------------------------------------------------------------
# Backends and their clients


class ClientError(Exception):
    """Base of errors a lock client reports to the runner."""


class DefiniteFailure(ClientError):
    """The operation certainly did not take effect: recorded as ``fail``."""


class Indeterminate(ClientError):
    """The operation may or may not have taken effect: recorded as ``info``."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A successful acquire: the fencing token (None for backends that have none)."""

    lock: str
    token: int | None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """Who holds a lock as read from one node (holders are session ids)."""

    lock: str
    holders: tuple[str, ...]
    token: int | None


@dataclass(frozen=True, slots=True)
class LockEvent:
    """One watch notification, in the service's order."""

    revision: int
    kind: Literal["acquired", "released", "expired"]
    lock: str
    session: str | None
    token: int | None


class LockClient(Protocol):
    """One logical client process's connection to a lock service (asyncio).

    Optional capabilities are separate protocols: ``LeaseAwareClient`` (``lease_deadline``), and
    ``stall(seconds)`` for the lease-expiry workload."""

    @property
    def session(self) -> str | None: ...

    async def acquire(self, lock: str, *, timeout: float, shared: bool = False) -> Grant: ...

    async def release(self, lock: str) -> None: ...

    async def owner(self, lock: str, *, node: str | None = None) -> OwnerInfo: ...

    def watch(self, prefix: str, *, from_revision: int = 0) -> AsyncIterator[LockEvent]: ...

    async def close(self) -> None: ...


@runtime_checkable
class LeaseAwareClient(Protocol):
    """An optional capability of a LockClient: it knows when its session's lease may have lapsed.

    A lease-based service may expire a session whose keepalives stopped getting through, and hand
    its locks to others, while the holder still believes it holds them. A client that tracks its
    lease can say so; the runner then records ``lease-lost`` (docs/history.md), so the checkers
    know from when the lock may have been released, instead of reporting a correct service wrong.
    """

    def lease_deadline(self) -> float | None:
        """The ``time.monotonic()`` moment from which the service may have expired the session,
        if that moment has passed (or the session is known lost); None while the lease is safe
        or when the client cannot tell."""
        ...


def lease_deadline_of(client: LockClient) -> float | None:
    """Ask a client since when its lease may have lapsed; None if it cannot tell (optional).

    A plain attribute lookup: it runs before every holder step, and ``isinstance`` against a
    runtime-checkable protocol costs ~3.5 us, a quarter of the runner's whole per-op CPU cost.
    """
    ask: Callable[[], float | None] | None = getattr(client, "lease_deadline", None)
    return None if ask is None else ask()


class Backend(Protocol):
    """A lock service the bench can deploy, fault and talk to."""

    name: str

    def deploy(self, cluster: Cluster) -> None:
        """Install the service on every node (idempotent)."""
        ...

    def start(self, node: Node) -> None: ...

    def stop(self, node: Node) -> None: ...

    def kill(self, node: Node) -> None:
        """kill -9 the service's process on the node."""
        ...

    def pause(self, node: Node) -> None: ...

    def resume(self, node: Node) -> None: ...

    def wipe(self, node: Node) -> None: ...

    def leader(self, cluster: Cluster) -> str | None:
        """The current leader's node name, if the service has one and it is known."""
        ...

    def log_files(self, node: Node) -> Sequence[str]: ...

    async def open_client(
        self, cluster: Cluster, node: Node, *, ttl: float, process: int
    ) -> LockClient: ...


@runtime_checkable
class StatefulBackend(Protocol):
    """An optional capability of a Backend: the one directory where its server keeps what it
    must not lose (its log, snapshots, database), chosen by the bench.

    The ``power-loss`` fault mounts a filesystem there that forgets what was not fsynced
    (nemesis/lazyfs.py), so only backends that declare it can get that fault. Everything else
    of the node (configs, logs, pidfiles) stays on the plain filesystem.
    """

    def state_dir(self, node: Node) -> str:
        """An absolute path under ``node.data_dir``; the server creates what it needs inside."""
        ...


def state_dir_of(backend: object) -> Callable[[Node], str] | None:
    """The backend's ``state_dir`` method, or None when it does not declare one."""
    method = getattr(backend, "state_dir", None)
    return method if callable(method) else None


def elects_leader(backend: object) -> bool:
    """Whether the service has a leader the runner should wait for and watch (default: yes).

    An optional capability: a backend whose servers elect none (Redlock's independent servers,
    a single Redis server) sets the class attribute ``elects_leader = False``. The runner then
    neither waits ``recovery_bound`` seconds for a leader before the clients start and after
    healing (a wait that could never end early) nor records leader changes; ``leader()`` still
    answers for faults aimed at "the leader" (the one Redis server, or None).
    """
    return bool(getattr(backend, "elects_leader", True))


def fencing_tokens(backend: object) -> bool:
    """Whether the service hands out fencing tokens with its grants (default: yes).

    An optional capability: a backend whose lock has no token (Redlock: the algorithm has none)
    sets the class attribute ``fencing_tokens = False``. A fenced protected resource refuses
    every access without a token, so ``lockbench compare`` runs such a backend against an
    unfenced resource unless told otherwise, and its row says so (docs/comparison.md).
    """
    return bool(getattr(backend, "fencing_tokens", True))


def timeout_scale(node: object) -> float:
    """How much longer than usual to wait for the node (an optional ``timeout_scale`` attribute
    of a Node; 1.0 without one). Software-emulated VMs answer many times slower: their
    inventory entries say so (bench.cluster.vagrant), and every wait on them grows with it."""
    scale = getattr(node, "timeout_scale", 1.0)
    return float(scale) if isinstance(scale, int | float) and scale >= 1 else 1.0


def fault_refusal(backend: object, fault: str, runtime: str) -> str | None:
    """Why ``backend`` cannot take ``fault`` on ``runtime`` (None: it can, as far as it knows).

    An optional capability: a backend may define
    ``fault_refusal(fault, runtime) -> str | None``, for a fault the runtime can inject that
    cannot reach the service (a clock skew through libfaketime cannot move a Go server's clock).
    The runner refuses such a test before anything starts, and ``lockbench compare`` shows the
    reason in the cell instead of a verdict: a fault that never reached the service proves nothing.
    """
    ask: Callable[[str, str], str | None] | None = getattr(backend, "fault_refusal", None)
    return None if ask is None else ask(fault, runtime)


# ---------------------------------------------------------------------------------------------
# Nemeses and workloads


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What a nemesis did: recorded as the value of its history record."""

    f: str
    description: Mapping[str, Any]


class Nemesis(Protocol):
    """Injects and heals one family of faults. ``heal`` must be safe to call at any time."""

    name: str

    def setup(self, cluster: Cluster) -> None: ...

    def invoke(self, f: str, target: Any) -> FaultAction: ...

    def heal(self) -> FaultAction | None: ...

    def teardown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What checking a fault plan needs to know about the cluster, taken once from the Cluster
    (or, before it exists, from the test file), so a bad plan fails before anything starts."""

    runtime: str
    node_names: tuple[str, ...]
    addresses: Mapping[str, str]
    capabilities: frozenset[str]
    # Peer links run through the local runtime's proxy: partitions and netem go there.
    link_proxy: bool = False
    # The backend's name and whether it declares where its server keeps its data
    # (StatefulBackend): power loss needs that directory.
    backend: str = "the backend"
    backend_state_dir: bool = True


@dataclass(slots=True)
class NemesisSetting:
    """What the faults of one run share: the cluster and backend, the run's seed, a lock per node
    (so two faults never interleave their commands on one node) and the clock offsets set."""

    cluster: Cluster
    backend: Backend
    seed: int
    node_locks: Any
    clock_offsets: dict[str, float] = field(default_factory=dict)
    # What a fault kind shares between its entries and with the runner (e.g. the power-loss
    # filesystem mounted once per node), by a key the kind chooses.
    shared: dict[str, Any] = field(default_factory=dict)


class FaultKind(Protocol):
    """One fault a test file's ``nemesis:`` list names (``fault: NAME``); a ``lockbench.nemeses``
    entry point. The nemesis runner owns the schedule, seeding, recording and the final heal; a
    kind checks its entries, picks each start's target and builds the Nemesis that injects it."""

    name: str
    keys: frozenset[str]
    """The keys an entry may hold besides ``fault`` and ``schedule``."""
    capability: str | None
    """The runtime capability it needs (``Cluster.capabilities``), None if any runtime will do."""
    heal_phase: int
    """Heal order: 0 resume paused processes, 1 network and clocks, 2 restart killed ones."""

    def parse(self, where: str, entry: Mapping[str, Any], facts: ClusterFacts) -> Any:
        """The entry's options; ConfigError naming ``where``, the key and the reason."""
        ...

    def build(self, setting: NemesisSetting, index: int, options: Any) -> Nemesis: ...

    def target(
        self,
        options: Any,
        nodes: Sequence[str],
        rng: Any,
        leader: Callable[[], str | None],
        hold: float,
    ) -> Any:
        """What one start hits (passed to ``Nemesis.invoke``), or a ``str`` saying why this
        start is skipped (e.g. no leader known). ``hold`` bounds the fault's seconds."""
        ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """An operation a workload's generator asks a process to perform."""

    f: str
    key: str | None
    value: Any = None


class Workload(Protocol):
    """Generates operations and performs them with a client; names its default checkers."""

    name: str
    default_checkers: Sequence[str]

    def next_op(self, process: int) -> Invocation | None:
        """The next op for a process, or None when that process is done."""
        ...

    async def perform(self, client: LockClient, op: Invocation) -> Any:
        """Run the op; the return value is recorded as the ok value. Raise ClientError otherwise."""
        ...


# ---------------------------------------------------------------------------------------------
# Report panels


class RunView(Protocol):
    """What a report panel may read about a run (reports.run_data.RunData is one)."""

    @property
    def run_dir(self) -> Path: ...

    @property
    def test(self) -> Mapping[str, Any]: ...

    @property
    def ops(self) -> Sequence[Op]: ...

    @property
    def calls(self) -> Sequence[Call]: ...

    @property
    def results(self) -> Sequence[CheckResult]: ...


class ReportPanel(Protocol):
    """A section of the HTML report, a ``lockbench.report_panels`` entry point: the report shows
    every installed panel, the built-in sections included (reports/render.py), with a link in its
    navigation. Optional attributes: ``order`` (an int; the built-in sections about the run are
    10-70, Configuration and Files 90 and 100, and a panel without one goes at 80) and
    ``whole_section`` (True: ``render`` returns the whole ``<section id=NAME>``, heading
    included, as the built-in sections do; otherwise the report wraps the body it returns in a
    ``<section id="panel-NAME">`` headed by ``title``)."""

    name: str
    title: str

    def render(self, run: RunView) -> str | None:
        """The panel's HTML body (the panel escapes what it shows), or None to leave it out."""
        ...
