"""`lockbench cluster` up/deploy/status/down on the local runtime (no root needed)."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path

import pytest

from bench.backends.reference import CLIENT_PORT, PEER_PORT, ReferenceBackend
from bench.cluster import load_inventory, open_cluster
from bench.commands import cluster as cluster_command
from lockbench.errors import BenchError
from tests.support.ports import free_port_block
from tests.support.waiting import wait_until

# Node i's ports are 7000/7001/7080 + offset + 10 (i - 1): five nodes span 121 ports.
NODE_PORT_SPAN = 121


def lockbench_cluster(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lockbench")
    cluster_command.register(parser.add_subparsers())
    args = parser.parse_args(["cluster", *argv])
    code: int = args.func(args)
    return code


@pytest.mark.process
def test_local_cluster_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = ["--dir", str(tmp_path / "c")]
    port_offset = free_port_block(NODE_PORT_SPAN) - CLIENT_PORT
    try:
        assert (
            lockbench_cluster(
                "up", "--runtime", "local", "--port-offset", str(port_offset), *target
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "local cluster up" in out
        assert "go through the link proxy" in out

        assert lockbench_cluster("status", *target) == 0
        assert capsys.readouterr().out.count("nothing running") == 5

        # n3's peer port is taken: the start fails naming n3 and the port, and nothing runs
        n3_peer_port = PEER_PORT + port_offset + 20
        taken = f"n3: daemon lockd: port {n3_peer_port} on 127.0.0.1 is already taken"
        with (
            socket.create_server(("127.0.0.1", n3_peer_port)),
            pytest.raises(BenchError, match=taken),
        ):
            lockbench_cluster("deploy", "--start", *target)
        capsys.readouterr()
        assert lockbench_cluster("status", *target) == 0
        assert "lockd pid" not in capsys.readouterr().out

        assert lockbench_cluster("deploy", "--start", *target) == 0
        assert "started reference on n1, n2, n3, n4, n5" in capsys.readouterr().out
        with open_cluster(load_inventory(tmp_path / "c" / "inventory.yaml")) as cluster:
            backend = ReferenceBackend()
            wait_until(lambda: backend.leader(cluster), timeout=30, what="a leader", interval=0.2)

        assert lockbench_cluster("status", *target) == 0
        assert len(re.findall(r"lockd pid \d+ running", capsys.readouterr().out)) == 5
    finally:
        lockbench_cluster("down", *target)
    out = capsys.readouterr().out
    assert len(re.findall(r"removed process \d+ \(n\d/lockd\)", out)) == 5
    assert not (tmp_path / "c").exists()


def test_status_of_a_missing_cluster_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"no cluster in .* \(run `lockbench cluster up` first\)"):
        lockbench_cluster("status", "--dir", str(tmp_path / "none"))


def test_ssh_runtime_needs_an_inventory(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="--runtime ssh needs --inventory"):
        lockbench_cluster("up", "--runtime", "ssh", "--dir", str(tmp_path / "s"))
