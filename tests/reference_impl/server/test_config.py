"""lockd's config file (the contract with the deployment code) and its clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_impl.server.config import ServerConfigError, load_config, with_overrides
from reference_impl.server.main import build_parser, resolve_config

CONTRACT = """\
id: n1
data_dir: /var/lib/lockbench/n1        # WAL, snapshots
members:                               # the same on every node, in the same order
  n1: {host: 10.77.1.11, peer_port: 7001, client_port: 7000, http_port: 7080}
  n2: {host: 10.77.1.12, peer_port: 7001, client_port: 7000, http_port: 7080}
listen_host: 0.0.0.0                   # optional; default: this member's host
tick_ms: 50
fsync: true
unsafe: []                             # e.g. [grant-before-commit]
"""


def test_the_contract_example_loads_exactly(tmp_path: Path) -> None:
    path = tmp_path / "n1.yaml"
    path.write_text(CONTRACT)
    config = load_config(path)
    assert config.id == "n1"
    assert config.data_dir == Path("/var/lib/lockbench/n1")
    assert list(config.members) == ["n1", "n2"]
    assert config.members["n2"].client_endpoint == "10.77.1.12:7000"
    assert config.bind_host == "0.0.0.0"
    assert config.tick_ms == 50
    assert config.fsync
    assert config.unsafe == frozenset()


def test_flags_override_the_file_and_add_unsafe_switches(tmp_path: Path) -> None:
    path = tmp_path / "n1.yaml"
    path.write_text(CONTRACT.replace("unsafe: []", "unsafe: [no-fsync]"))
    args = build_parser().parse_args(
        ["--config", str(path), "--id", "n2", "--data-dir", "/d", "--unsafe-reuse-tokens"]
    )
    config = resolve_config(args)
    assert config.id == "n2"
    assert config.data_dir == Path("/d")
    assert config.unsafe == {"no-fsync", "reuse-tokens"}
    assert with_overrides(config, tick_ms=None).tick_ms == 50


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("id: n1", "id: n7"), "not among members"),
        (("tick_ms: 50", "tick_ms: fast"), "tick_ms: must be an integer"),
        (("unsafe: []", "unsafe: [grant-early]"), "unknown switch"),
        (("peer_port: 7001, client_port", "peer_port: 99999, client_port"), "peer_port"),
        (("fsync: true", "fsync: maybe"), "fsync: must be true or false"),
        (("tick_ms: 50", "tick_ms: 50\ncolour: blue"), "unknown key"),
        (("tick_ms: 50", "tick_ms: 50\nsnapshot_entries: 0"), "snapshot_entries: must be >= 1"),
        (("tick_ms: 50", "tick_ms: 50\nwal_zeroed_tail_bytes: -1"), "wal_zeroed_tail_bytes"),
        (("tick_ms: 50", "tick_ms: 50\nwal_zeroed_tail_bytes: 4MiB"), "must be an integer"),
        (("tick_ms: 50", "tick_ms: 50\nleader_writes: async"), "leader_writes: must be one of"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CONTRACT.replace(*change, 1))
    with pytest.raises(ServerConfigError, match=message):
        load_config(path)
