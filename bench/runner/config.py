"""Test files: plain YAML data, validated completely before anything starts.

A test names a runtime (or an inventory), a backend, a workload, a nemesis schedule and checkers,
plus the run's time limit, concurrency, rate, timeouts and seed (docs/running.md lists every key).
Command-line flags override keys. Every mistake (an unknown key, a wrong type, an impossible
setting such as concurrency 0 or a fault the runtime cannot inject) is a ConfigError naming the
file, the key and the reason, raised before any cluster, server or process is started.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bench.checking import available_checkers, run_checker_options
from bench.cluster import load_inventory, runtime_capabilities
from bench.cluster.vagrant import TCG_CHECKER_FLOORS, slow_vm_floors
from bench.runner.components import (
    backend_runtimes,
    create_backend,
    load_backend_class,
    workload_names,
    workload_spec,
)
from lockbench.errors import ConfigError
from lockbench.options import CheckOptions, OptionError, parse_options, require
from lockbench.plugins import WORKLOADS, has_plugin
from lockbench.protocols import ClusterFacts, fault_refusal
from nemesis.spec import parse_specs
from workloads.base import WorkloadContext

log = logging.getLogger(__name__)

Runtime = Literal["auto", "netns", "local", "ssh", "vagrant", "none"]
# The default test ships inside the package, so ``lockbench run`` works from an installed wheel.
DEFAULT_TEST_FILE = Path(__file__).resolve().parent / "default.yaml"


@dataclass(frozen=True, slots=True)
class TestConfig:
    """One test, resolved. Field names are the YAML keys (docs/running.md)."""

    __test__ = False  # not a pytest test class, despite the name

    name: str = "lockbench"
    runtime: Runtime = "auto"
    inventory: str | None = None
    nodes: int = 5
    netns_prefix: str = "lb"
    subnet: str = "10.77.0.0/24"
    cluster_dir: str | None = None
    port_offset: int = 0
    backend: str = "reference"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    workload: str = "mutex"
    workload_options: Mapping[str, Any] = field(default_factory=dict)
    nemesis: tuple[Mapping[str, Any], ...] = ()
    checkers: tuple[str, ...] | None = None
    checker_options: Mapping[str, Any] = field(default_factory=dict)
    time_limit: float = 30.0
    concurrency: int = 10
    rate: float | None = None
    op_timeout: float = 5.0
    ttl: float = 3.0
    seed: int | None = None
    quiet_period: float = 2.0
    recovery_bound: float = 15.0
    resource_mode: Literal["fenced", "unfenced"] = "fenced"
    resource_host: str = "127.0.0.1"
    resource_port: int = 0
    leader_poll: float = 1.0

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "name", "must not be empty")
        require("/" not in self.name, "name", "is a directory name in the store: no '/'")
        require(self.nodes >= 1, "nodes", "must be at least 1")
        require(self.time_limit > 0, "time_limit", "must be positive (seconds)")
        require(self.concurrency >= 1, "concurrency", "must be at least 1 client process")
        require(self.rate is None or self.rate > 0, "rate", "must be positive ops/s, or null")
        require(self.op_timeout > 0, "op_timeout", "must be positive (seconds)")
        require(self.ttl > 0, "ttl", "must be positive (seconds)")
        require(self.quiet_period >= 0, "quiet_period", "must not be negative")
        require(self.recovery_bound >= 0, "recovery_bound", "must not be negative")
        require(0 <= self.resource_port <= 65535, "resource_port", "must be a TCP port (0: any)")
        require(self.leader_poll > 0, "leader_poll", "must be positive (seconds)")
        require(
            self.inventory is None or self.runtime != "none",
            "inventory",
            "makes no sense with runtime none (an in-process backend has no nodes)",
        )
        require(0 <= self.port_offset <= 50000, "port_offset", "must be within 0..50000")
        require(
            self.runtime != "ssh" or self.inventory is not None,
            "inventory",
            "runtime ssh needs an inventory listing your hosts (docs/runtimes.md)",
        )

    def to_data(self) -> dict[str, Any]:
        """Plain data for test.yaml (lists instead of tuples)."""
        data = dataclasses.asdict(self)
        data["nemesis"] = [dict(spec) for spec in self.nemesis]
        data["checkers"] = list(self.checkers) if self.checkers is not None else None
        return data

    @property
    def resolved_checkers(self) -> tuple[str, ...]:
        if self.checkers is not None:
            return self.checkers
        return workload_spec(self.workload).default_checkers


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``workload_options.locks``) in a copy of the raw test data."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        target = out
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = dict(child) if isinstance(child, Mapping) else {}
                target[part] = child
            target = child
        target[parts[-1]] = value
    return out


def load_test_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> TestConfig:
    """Read, override, resolve and validate a test file; ConfigError names file, key, reason."""
    overrides = dict(overrides or {})
    source_path = path if path is not None else DEFAULT_TEST_FILE
    source = str(source_path)
    try:
        text = source_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the test file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a test file is a mapping of keys, got {type(data).__name__}")
    data = apply_overrides(dict(data), overrides)
    data.setdefault("name", source_path.stem)
    try:
        config = parse_options(TestConfig, data)
        config = _resolve(config)
        _validate_parts(config)
    except OptionError as exc:
        where = " (value from the command line)" if _overridden(exc.key, overrides) else ""
        raise ConfigError(f"{source}: {exc.key}: {exc.reason}{where}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return config


def _overridden(key: str, overrides: Mapping[str, Any]) -> bool:
    return any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in overrides)


def _resolve(config: TestConfig) -> TestConfig:
    """Fill in what 'auto' and null mean for this machine: runtime and seed.

    ``runtime: auto`` is netns when root, else local; on the local runtime faults it cannot
    inject (clock skew without libfaketime) are dropped with a warning, so the default test
    still runs, with fewer faults, for a user without root. Partitions and netem work there
    through the link proxy on every peer link.
    """
    changes: dict[str, Any] = {}
    if config.seed is None:
        changes["seed"] = random.SystemRandom().randrange(2**31)
    if config.runtime == "auto":
        runtimes = backend_runtimes(load_backend_class(config.backend))
        if config.inventory is not None:
            changes["runtime"] = "ssh"  # replaced by the inventory's own runtime when opened
        elif runtimes == ("none",):
            changes["runtime"] = "none"
        elif os.geteuid() == 0:
            changes["runtime"] = "netns"
        else:
            changes["runtime"] = "local"
            changes["nemesis"] = _faults_local_can_do(config.nemesis)
    if config.inventory is not None:
        changes.update(_slow_vm_timings(config))
    return dataclasses.replace(config, **changes) if changes else config


def _slow_vm_timings(config: TestConfig) -> dict[str, Any]:
    """The vagrant runtime's slow-VM timing floors (bench.cluster.vagrant.slow_vm_floors) for a
    test on software-emulated VMs: raised where the test asks for less, each change logged."""
    inventory = load_inventory(Path(str(config.inventory)))
    if inventory.runtime != "vagrant":
        return {}
    floors, backend_floors = slow_vm_floors(inventory.cluster_dir, config.backend)
    if not floors:
        return {}
    changes: dict[str, Any] = {}
    for key, floor in floors.items():
        value = getattr(config, key)
        if value < floor:
            log.info("software-emulated VMs: %s %s -> %s (the runtime's floor)", key, value, floor)
            changes[key] = floor
    options = dict(config.backend_options)
    for key, floor in backend_floors.items():
        value = options.get(key)
        if not isinstance(value, int) or value < floor:
            log.info(
                "software-emulated VMs: backend_options.%s %s -> %s (the runtime's floor)",
                key,
                value if value is not None else "default",
                floor,
            )
            options[key] = floor
    if options != dict(config.backend_options):
        changes["backend_options"] = options
    checker_options = dict(config.checker_options)
    for key, floor in TCG_CHECKER_FLOORS.items():
        value = checker_options.get(key)
        if not isinstance(value, int | float) or value < floor:
            log.info(
                "software-emulated VMs: checker_options.%s -> %s (the runtime's floor)", key, floor
            )
            checker_options[key] = floor
    changes["checker_options"] = checker_options
    return changes


def _faults_local_can_do(nemesis: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
    possible = runtime_capabilities("local")
    kept = tuple(spec for spec in nemesis if spec.get("fault") in possible)
    dropped = sorted({str(spec.get("fault")) for spec in nemesis} - possible)
    if dropped:
        log.warning(
            "runtime auto chose local (not root): skipping %s faults it cannot inject; "
            "run as root for the netns runtime",
            ", ".join(dropped),
        )
    return kept


def _validate_parts(config: TestConfig) -> None:
    """Check the named parts exist and fit together (imports only; nothing is started)."""
    runtimes = backend_runtimes(load_backend_class(config.backend))
    if runtimes is not None and config.runtime not in runtimes:
        raise OptionError(
            "runtime",
            f"backend {config.backend!r} runs only on runtime(s) {', '.join(runtimes)}, "
            f"not {config.runtime!r}",
        )
    try:
        backend = create_backend(config.backend, config.backend_options)
    except ConfigError as exc:
        raise OptionError("backend_options", str(exc)) from exc
    for index, entry in enumerate(config.nemesis):
        refusal = fault_refusal(backend, str(entry.get("fault")), config.runtime)
        if refusal is not None:
            raise OptionError(
                f"nemesis[{index}]", f"backend {config.backend!r} cannot take this fault: {refusal}"
            )

    if not has_plugin(WORKLOADS, config.workload):
        raise OptionError(
            "workload", f"unknown workload; known: {', '.join(sorted(workload_names()))}"
        )
    try:
        spec = workload_spec(config.workload)
    except ConfigError as exc:
        raise OptionError("workload", str(exc)) from exc
    options = parse_options(spec.options, config.workload_options, where="workload_options")
    node_names = tuple(f"n{i + 1}" for i in range(config.nodes))
    context = WorkloadContext(config.seed or 0, config.concurrency, config.ttl, node_names)
    try:
        spec.build(options, context)
    except OptionError as exc:
        raise OptionError(f"workload_options.{exc.key}", exc.reason) from None

    if config.nemesis:
        _validate_nemesis(config)
    _validate_checkers(config)


def planned_cluster_facts(config: TestConfig) -> ClusterFacts:
    """The nemesis's view of the cluster this test will create (names, addresses, faults).

    Lets the fault plan be checked before the cluster exists; the opened cluster is checked
    again. With an inventory the real node names and addresses are read from it.
    """
    if config.inventory is not None:
        inventory = load_inventory(Path(config.inventory))
        return ClusterFacts(
            runtime=inventory.runtime,
            node_names=tuple(n.name for n in inventory.nodes),
            addresses={n.name: n.address for n in inventory.nodes},
            capabilities=runtime_capabilities(inventory.runtime),
            link_proxy=inventory.runtime == "local",
        )
    names = tuple(f"n{i + 1}" for i in range(config.nodes))
    if config.runtime == "none":
        capabilities: frozenset[str] = frozenset()
    else:
        capabilities = runtime_capabilities(config.runtime)
    if config.runtime == "netns":
        hosts = ipaddress.IPv4Network(config.subnet).hosts()
        next(hosts)  # the bridge (control node)
        addresses = {name: str(next(hosts)) for name in names}
    else:
        addresses = dict.fromkeys(names, "127.0.0.1")
    # The local runtime's peer links go through its link proxy: partitions and netem act there.
    return ClusterFacts(
        config.runtime, names, addresses, capabilities, link_proxy=config.runtime == "local"
    )


def _validate_nemesis(config: TestConfig) -> None:
    try:
        facts = planned_cluster_facts(config)
    except ValueError as exc:
        raise OptionError("subnet", str(exc)) from exc
    backend_class = load_backend_class(config.backend)
    facts = dataclasses.replace(
        facts,
        backend=config.backend,
        backend_state_dir=callable(getattr(backend_class, "state_dir", None)),
    )
    parse_specs(config.nemesis, facts)


def _validate_checkers(config: TestConfig) -> None:
    known = set(available_checkers())
    for i, name in enumerate(config.resolved_checkers):
        if name not in known:
            key = f"checkers[{i}]" if config.checkers is not None else "workload"
            raise OptionError(key, f"unknown checker {name!r}; known: {', '.join(sorted(known))}")
    try:
        CheckOptions.from_mapping(run_checker_options(config.ttl, config.checker_options))
    except ConfigError as exc:
        raise OptionError("checker_options", str(exc)) from exc
