"""The inventory: which nodes a cluster has and how to reach them (a YAML file per cluster).

Every runtime writes one (``cluster_dir/inventory.yaml``) and everything else reads only it, so a
cluster made by ``netns_up``, by Vagrant or by hand looks the same to the bench.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lockbench.errors import ConfigError

RUNTIMES: frozenset[str] = frozenset({"netns", "local", "ssh", "vagrant"})
DEFAULT_NODE_PYTHON = "/usr/bin/python3"
DEFAULT_DATA_ROOT = "/var/lib/lockbench"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """How to reach one node and where the bench may write on it.

    ``port_offset`` is added to every service port: the local runtime puts five servers on one
    address. ``data_dir`` defaults to ``/var/lib/lockbench/<name>``. ``python`` is the node's
    interpreter used to make the deployment venv (it must have PyYAML). ``timeout_scale``
    multiplies every command timeout and daemon start-up wait on the node (software-emulated
    VMs: bench.cluster.vagrant sets it).
    """

    name: str
    address: str
    ssh_port: int = 22
    user: str = "root"
    key_file: str | None = None
    data_dir: str = ""
    port_offset: int = 0
    python: str = DEFAULT_NODE_PYTHON
    timeout_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.data_dir:
            object.__setattr__(self, "data_dir", f"{DEFAULT_DATA_ROOT}/{self.name}")


class SpecNode:
    """What every node kind reads straight from its inventory entry (name, address, data dir)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def data_dir(self) -> str:
        return self.spec.data_dir


@dataclass(frozen=True, slots=True)
class Inventory:
    """A cluster: its runtime, its nodes, its directory (keys, state) and its pinned host keys."""

    runtime: str
    nodes: tuple[NodeSpec, ...]
    cluster_dir: Path
    known_hosts: Path | None

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise ConfigError(f"inventory of {self.cluster_dir}: no node named {name!r}")


_NODE_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "address",
        "ssh_port",
        "user",
        "key_file",
        "data_dir",
        "port_offset",
        "python",
        "timeout_scale",
    }
)


def _require(
    mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: Path
) -> Any:
    if key not in mapping:
        raise ConfigError(f"{path}: {where}: missing key {key!r}")
    value = mapping[key]
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{path}: {where}: key {key!r} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{path}: {where}: key {key!r} must be a {names}, got {value!r}")
    return value


def _optional(
    mapping: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any,
    where: str,
    path: Path,
) -> Any:
    if key not in mapping or mapping[key] is None:
        return default
    return _require(mapping, key, kind, where, path)


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(os.path.expanduser(value))
    return candidate if candidate.is_absolute() else (base / candidate)


def _parse_node(raw: Any, index: int, path: Path) -> NodeSpec:
    where = f"nodes[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where}: must be a mapping with name and address")
    unknown = sorted(set(raw) - _NODE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: {where}: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_NODE_KEYS))})"
        )
    name = _require(raw, "name", str, where, path)
    where = f"node {name}"
    key_file = _optional(raw, "key_file", str, None, where, path)
    if key_file is not None:
        key_file = str(_resolve(path.parent, key_file))
    ssh_port = _optional(raw, "ssh_port", int, 22, where, path)
    if not 0 < ssh_port < 65536:
        raise ConfigError(f"{path}: {where}: key 'ssh_port' must be 1-65535, got {ssh_port}")
    timeout_scale = _optional(raw, "timeout_scale", (int, float), 1.0, where, path)
    if isinstance(timeout_scale, bool) or not 1 <= timeout_scale <= 100:
        raise ConfigError(
            f"{path}: {where}: key 'timeout_scale' must be a number from 1 to 100, "
            f"got {timeout_scale!r}"
        )
    return NodeSpec(
        name=name,
        address=_require(raw, "address", str, where, path),
        timeout_scale=float(timeout_scale),
        ssh_port=ssh_port,
        user=_optional(raw, "user", str, "root", where, path),
        key_file=key_file,
        data_dir=_optional(raw, "data_dir", str, "", where, path),
        port_offset=_optional(raw, "port_offset", int, 0, where, path),
        python=_optional(raw, "python", str, DEFAULT_NODE_PYTHON, where, path),
    )


def load_inventory(path: Path) -> Inventory:
    """Read an inventory; any mistake is a ConfigError naming the file, the key and the reason.

    Relative ``cluster_dir``, ``known_hosts`` and ``key_file`` are relative to the file's folder.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read inventory: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an inventory is a mapping with keys runtime and nodes")
    runtime = _require(raw, "runtime", str, "top level", path)
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"{path}: key 'runtime' must be one of {', '.join(sorted(RUNTIMES))}, got {runtime!r}"
        )
    raw_nodes = _require(raw, "nodes", list, "top level", path)
    if not raw_nodes:
        raise ConfigError(f"{path}: key 'nodes' lists no node")
    nodes = tuple(_parse_node(item, i, path) for i, item in enumerate(raw_nodes))
    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: key 'nodes': duplicate node name(s) {', '.join(duplicates)}")
    endpoints = [(n.address, n.port_offset) for n in nodes]
    if len(set(endpoints)) != len(endpoints):
        raise ConfigError(
            f"{path}: key 'nodes': two nodes share an address and port_offset "
            "(give nodes on one address distinct port_offset values)"
        )
    cluster_dir = _resolve(path.parent, _optional(raw, "cluster_dir", str, ".", "top", path))
    known_hosts_value = _optional(raw, "known_hosts", str, None, "top level", path)
    known_hosts = _resolve(path.parent, known_hosts_value) if known_hosts_value else None
    return Inventory(runtime=runtime, nodes=nodes, cluster_dir=cluster_dir, known_hosts=known_hosts)


def inventory_to_dict(inv: Inventory) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for n in inv.nodes:
        entry: dict[str, Any] = {"name": n.name, "address": n.address}
        if n.ssh_port != 22:
            entry["ssh_port"] = n.ssh_port
        entry["user"] = n.user
        if n.key_file is not None:
            entry["key_file"] = n.key_file
        entry["data_dir"] = n.data_dir
        if n.port_offset:
            entry["port_offset"] = n.port_offset
        if n.python != DEFAULT_NODE_PYTHON:
            entry["python"] = n.python
        if n.timeout_scale != 1.0:
            entry["timeout_scale"] = n.timeout_scale
        nodes.append(entry)
    out: dict[str, Any] = {"runtime": inv.runtime, "cluster_dir": str(inv.cluster_dir)}
    if inv.known_hosts is not None:
        out["known_hosts"] = str(inv.known_hosts)
    out["nodes"] = nodes
    return out


def save_inventory(inv: Inventory, path: Path) -> None:
    """Write the inventory (0600: it names key files) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(inventory_to_dict(inv), handle, sort_keys=False)
    os.replace(tmp, path)
