"""lockd's configuration: the YAML file shared with the deployment code, plus flag overrides.

The file format is a contract with ``bench`` (docs/reference-server.md)::

    id: n1
    data_dir: /var/lib/lockbench/n1
    members:
      n1: {host: 10.77.1.11, peer_port: 7001, client_port: 7000, http_port: 7080}
    listen_host: 0.0.0.0      # optional; default: this member's host
    tick_ms: 50
    fsync: true
    unsafe: []                # e.g. [grant-before-commit]

Optional keys beyond the contract: ``lock_delay_ms``, ``auth_token_file``, ``tls`` (``cert``,
``key``, optional ``client_ca``), ``peer_tls`` (``cert``, ``key``, ``ca``: mutual TLS on the Raft
peer links), ``event_log_capacity``, ``snapshot_entries``, ``wal_zeroed_tail_bytes`` (zeros kept
ahead of the WAL's records so an fsync changes no file metadata; 0 appends instead),
``leader_writes`` (``inline``, the default, or ``background``: the leader's own WAL write made by
a dedicated thread, for disks whose fsync is slow enough to stall the loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

UNSAFE_SWITCHES: Mapping[str, str] = {
    "grant-before-commit": "answers acquires from the leader's local state before the entry "
    "commits (exposed by a partition of the leader: two holders)",
    "stale-follower-reads": "followers answer owner/check_token from local state without "
    "ReadIndex (exposed by a partition or a lagging follower: stale reads)",
    "no-fsync": "skips fsync of the Raft log (exposed by losing un-fsynced writes on a majority, "
    "e.g. power loss or a lazyfs-style fault; plain kill -9 keeps the page cache)",
    "reuse-tokens": "fencing tokens from an in-memory counter that is not persisted (exposed "
    "by restarting the node that then leads: a token handed out twice)",
    "wallclock-expiry": "expires sessions on the wall clock without a fresh TTL after failover "
    "(exposed by clock jumps and leader kills: healthy holders lose locks while still using them)",
    "no-check-quorum": "a deposed leader keeps acting (exposed by a leader partitioned into a "
    "minority: stale owner reads)",
}


class ServerConfigError(ValueError):
    """A configuration that cannot work; the message names the key and what to change."""


@dataclass(frozen=True, slots=True)
class Member:
    host: str
    peer_port: int
    client_port: int
    http_port: int

    @property
    def client_endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class PeerTlsConfig:
    """Mutual TLS on the Raft peer links: every node presents ``cert`` (signed by ``ca``, naming
    its node id in a DNS subjectAltName) and accepts only peers whose certificates ``ca`` signed."""

    cert: Path
    key: Path
    ca: Path


PEER_TLS_KEYS = ("cert", "key", "ca")
LEADER_WRITES = ("inline", "background")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    id: str
    data_dir: Path
    members: Mapping[str, Member]
    listen_host: str | None = None
    tick_ms: int = 50
    fsync: bool = True
    unsafe: frozenset[str] = frozenset()
    lock_delay_ms: int = 0
    auth_token: str | None = None
    tls: TlsConfig | None = None
    peer_tls: PeerTlsConfig | None = None
    event_log_capacity: int = 10_000
    snapshot_entries: int = 100_000
    wal_zeroed_tail_bytes: int = 4 << 20
    leader_writes: str = "inline"
    log_file: Path | None = None
    pidfile: Path | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ServerConfigError("id: must name this node, e.g. n1")
        if self.id not in self.members:
            raise ServerConfigError(
                f"id: {self.id!r} is not among members {sorted(self.members)}; "
                "every node needs its own entry under members"
            )
        if not 1 <= self.tick_ms <= 10_000:
            raise ServerConfigError(f"tick_ms: {self.tick_ms} is outside 1..10000")
        unknown = self.unsafe - set(UNSAFE_SWITCHES)
        if unknown:
            raise ServerConfigError(
                f"unsafe: unknown switch(es) {sorted(unknown)}; known: {sorted(UNSAFE_SWITCHES)}"
            )
        if self.lock_delay_ms < 0:
            raise ServerConfigError("lock_delay_ms: must be >= 0")
        if self.event_log_capacity < 1:
            raise ServerConfigError("event_log_capacity: must be >= 1")
        if self.snapshot_entries < 1:
            raise ServerConfigError("snapshot_entries: must be >= 1")
        if self.leader_writes not in LEADER_WRITES:
            raise ServerConfigError(
                f"leader_writes: must be one of {', '.join(LEADER_WRITES)}, "
                f"got {self.leader_writes!r}"
            )
        if not 0 <= self.wal_zeroed_tail_bytes <= 1 << 30:
            raise ServerConfigError(
                "wal_zeroed_tail_bytes: must be between 0 (append instead) and 1 GiB, "
                f"got {self.wal_zeroed_tail_bytes}"
            )

    @property
    def me(self) -> Member:
        return self.members[self.id]

    @property
    def bind_host(self) -> str:
        return self.listen_host or self.me.host

    def is_unsafe(self, switch: str) -> bool:
        return switch in self.unsafe


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ServerConfigError(f"{where}: must be a port number 1..65535, got {value!r}")
    return value


def parse_members(raw: Any) -> dict[str, Member]:
    if not isinstance(raw, Mapping) or not raw:
        raise ServerConfigError("members: must map node ids to {host, peer_port, client_port, ...}")
    members: dict[str, Member] = {}
    for node_id, spec in raw.items():
        where = f"members.{node_id}"
        if not isinstance(spec, Mapping):
            raise ServerConfigError(f"{where}: must be a mapping")
        missing = {"host", "peer_port", "client_port", "http_port"} - set(spec)
        if missing:
            raise ServerConfigError(f"{where}: missing {sorted(missing)}")
        if not isinstance(spec["host"], str) or not spec["host"]:
            raise ServerConfigError(f"{where}.host: must be a host name or address")
        members[str(node_id)] = Member(
            spec["host"],
            _port(spec["peer_port"], f"{where}.peer_port"),
            _port(spec["client_port"], f"{where}.client_port"),
            _port(spec["http_port"], f"{where}.http_port"),
        )
    return members


KNOWN_KEYS = frozenset(
    {
        "id",
        "data_dir",
        "members",
        "listen_host",
        "tick_ms",
        "fsync",
        "unsafe",
        "lock_delay_ms",
        "auth_token_file",
        "tls",
        "peer_tls",
        "event_log_capacity",
        "snapshot_entries",
        "wal_zeroed_tail_bytes",
        "leader_writes",
    }
)


def _int(raw: Mapping[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServerConfigError(f"{key}: must be an integer, got {value!r}")
    return value


def read_auth_token(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ServerConfigError(f"auth_token_file: cannot read {path}: {exc}") from exc
    if not token:
        raise ServerConfigError(f"auth_token_file: {path} is empty")
    return token


def tls_config(cert: str, key: str, client_ca: str | None) -> TlsConfig:
    return TlsConfig(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def peer_tls_config(raw: Any) -> PeerTlsConfig:
    """``raw`` maps cert, key and ca to paths; all three are needed (mutual TLS)."""
    if not isinstance(raw, Mapping):
        raise ServerConfigError("peer_tls: must be a mapping with cert, key and ca")
    unknown = set(raw) - set(PEER_TLS_KEYS)
    if unknown:
        raise ServerConfigError(f"peer_tls: unknown key(s) {sorted(unknown)}; known: cert, key, ca")
    missing = [key for key in PEER_TLS_KEYS if not raw.get(key)]
    if missing:
        raise ServerConfigError(
            f"peer_tls: missing {', '.join(missing)}; mutual TLS on the peer links needs cert, "
            "key and ca on every node"
        )
    return PeerTlsConfig(Path(str(raw["cert"])), Path(str(raw["key"])), Path(str(raw["ca"])))


def config_from_mapping(raw: Mapping[str, Any], *, source: str = "config") -> ServerConfig:
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise ServerConfigError(f"{source}: unknown key(s) {sorted(unknown)}")
    if "id" not in raw or "data_dir" not in raw or "members" not in raw:
        raise ServerConfigError(f"{source}: id, data_dir and members are required")
    fsync = raw.get("fsync", True)
    if not isinstance(fsync, bool):
        raise ServerConfigError(f"fsync: must be true or false, got {fsync!r}")
    unsafe = raw.get("unsafe") or []
    if not isinstance(unsafe, list) or not all(isinstance(u, str) for u in unsafe):
        raise ServerConfigError("unsafe: must be a list of switch names")
    auth_token = (
        read_auth_token(str(raw["auth_token_file"])) if raw.get("auth_token_file") else None
    )
    tls = None
    if raw.get("tls"):
        spec = raw["tls"]
        if not isinstance(spec, Mapping) or "cert" not in spec or "key" not in spec:
            raise ServerConfigError("tls: needs cert and key (and optionally client_ca)")
        tls = tls_config(spec["cert"], spec["key"], spec.get("client_ca"))
    peer_tls = peer_tls_config(raw["peer_tls"]) if raw.get("peer_tls") else None
    listen_host = raw.get("listen_host")
    if listen_host is not None and not isinstance(listen_host, str):
        raise ServerConfigError("listen_host: must be an address such as 0.0.0.0")
    return ServerConfig(
        id=str(raw["id"]),
        data_dir=Path(str(raw["data_dir"])),
        members=parse_members(raw["members"]),
        listen_host=listen_host,
        tick_ms=_int(raw, "tick_ms", 50),
        fsync=fsync,
        unsafe=frozenset(unsafe),
        lock_delay_ms=_int(raw, "lock_delay_ms", 0),
        auth_token=auth_token,
        tls=tls,
        peer_tls=peer_tls,
        event_log_capacity=_int(raw, "event_log_capacity", 10_000),
        snapshot_entries=_int(raw, "snapshot_entries", 100_000),
        wal_zeroed_tail_bytes=_int(raw, "wal_zeroed_tail_bytes", 4 << 20),
        leader_writes=raw.get("leader_writes", "inline"),
    )


def load_config(path: Path) -> ServerConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ServerConfigError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ServerConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ServerConfigError(f"{path}: must be a YAML mapping")
    return config_from_mapping(raw, source=str(path))


def with_overrides(config: ServerConfig, **changes: Any) -> ServerConfig:
    """Apply flag overrides (None means "not given")."""
    given = {k: v for k, v in changes.items() if v is not None}
    if "unsafe" in given:
        given["unsafe"] = config.unsafe | frozenset(given["unsafe"])
    return replace(config, **given)
