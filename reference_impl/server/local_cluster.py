"""Run a cluster of real ``lockd`` processes on loopback, for tests, benchmarks and demos.

Each node is a separate process started from the installed console script's module, with its
own data directory, pidfile and log file. Faults are real: ``kill()`` is SIGKILL, ``pause()`` is
SIGSTOP. Everything is cleaned up by ``stop_all()`` (also on context exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from reference_impl.server.config import PeerTlsConfig


class LocalClusterError(RuntimeError):
    """A node did not start, or no leader emerged in time; the message points at the logs."""


@dataclass(frozen=True, slots=True)
class LocalNode:
    id: str
    host: str
    peer_port: int
    client_port: int
    http_port: int
    directory: Path

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "lockd.yaml"

    @property
    def log_file(self) -> Path:
        return self.directory / "lockd.log"


class LocalCluster:
    """``size`` lockd nodes; node i uses ports base+10*i (+0 client, +1 peer, +2 http)."""

    def __init__(
        self,
        directory: Path,
        *,
        size: int = 3,
        base_port: int = 17000,
        host: str = "127.0.0.1",
        fsync: bool = True,
        unsafe: Sequence[str] = (),
        extra_config: dict[str, object] | None = None,
        extra_args: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
        peer_tls: Mapping[str, PeerTlsConfig] | None = None,
    ) -> None:
        self.directory = directory
        self.nodes = [
            LocalNode(
                f"n{i + 1}",
                host,
                base_port + 10 * i + 1,
                base_port + 10 * i,
                base_port + 10 * i + 2,
                directory / f"n{i + 1}",
            )
            for i in range(size)
        ]
        self.fsync = fsync
        self.unsafe = list(unsafe)
        self.extra_config = dict(extra_config or {})
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})  # e.g. LD_PRELOAD of the bench's clock library
        self.peer_tls = dict(peer_tls or {})  # node id -> its peer_tls section; default: off
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()

    @property
    def endpoints(self) -> list[str]:
        return [node.endpoint for node in self.nodes]

    def node(self, node_id: str) -> LocalNode:
        return next(n for n in self.nodes if n.id == node_id)

    def write_configs(self) -> None:
        members = {
            n.id: {
                "host": n.host,
                "peer_port": n.peer_port,
                "client_port": n.client_port,
                "http_port": n.http_port,
            }
            for n in self.nodes
        }
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            config = {
                "id": node.id,
                "data_dir": str(node.directory / "data"),
                "members": members,
                "tick_ms": 50,
                "fsync": self.fsync,
                "unsafe": self.unsafe,
                **self.extra_config,
            }
            node_tls = self.peer_tls.get(node.id)
            if node_tls is not None:
                config["peer_tls"] = {
                    "cert": str(node_tls.cert),
                    "key": str(node_tls.key),
                    "ca": str(node_tls.ca),
                }
            node.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, node_id: str) -> None:
        node = self.node(node_id)
        if not node.config_file.exists():
            self.write_configs()
        log = node.log_file.open("ab")
        self.processes[node_id] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reference_impl.server.main",
                "--config",
                str(node.config_file),
                "--pidfile",
                str(node.directory / "lockd.pid"),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.extra_env} if self.extra_env else None,
        )
        log.close()

    def start_all(self, *, timeout: float = 20.0) -> str:
        self.write_configs()
        for node in self.nodes:
            self.start(node.id)
        return self.wait_for_leader(timeout=timeout)

    def status(self, node_id: str, *, timeout: float = 1.0) -> dict[str, object] | None:
        node = self.node(node_id)
        try:
            with urllib.request.urlopen(
                f"http://{node.host}:{node.http_port}/status", timeout=timeout
            ) as response:
                status: dict[str, object] = json.loads(response.read())
                return status
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def leader(self, *, among: Sequence[str] | None = None) -> str | None:
        """The node that reports itself leader (and is not paused), if any."""
        for node in self.nodes:
            if among is not None and node.id not in among:
                continue
            if node.id in self.paused or not self.alive(node.id):
                continue
            status = self.status(node.id, timeout=0.5)
            if status is not None and status.get("role") == "leader":
                return node.id
        return None

    def wait_for_leader(
        self, *, timeout: float = 20.0, exclude: Sequence[str] = (), min_term: int = 0
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.id in exclude or node.id in self.paused or not self.alive(node.id):
                    continue
                status = self.status(node.id, timeout=0.5)
                if (
                    status is not None
                    and status.get("role") == "leader"
                    and int(str(status.get("term", 0))) >= min_term
                ):
                    return node.id
            time.sleep(0.05)
        logs = ", ".join(str(n.log_file) for n in self.nodes)
        raise LocalClusterError(f"no leader within {timeout:.0f}s; see {logs}")

    def alive(self, node_id: str) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def kill(self, node_id: str) -> None:
        """kill -9: no shutdown code runs, un-fsynced data is at the kernel's mercy."""
        process = self.processes.get(node_id)
        if process is not None and process.poll() is None:
            if node_id in self.paused:
                self.resume(node_id)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def pause(self, node_id: str) -> None:
        process = self.processes[node_id]
        process.send_signal(signal.SIGSTOP)
        self.paused.add(node_id)

    def resume(self, node_id: str) -> None:
        process = self.processes[node_id]
        process.send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    def stop(self, node_id: str) -> None:
        process = self.processes.get(node_id)
        if process is None or process.poll() is not None:
            return
        if node_id in self.paused:
            self.resume(node_id)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for node in self.nodes:
            self.stop(node.id)

    def pid(self, node_id: str) -> int:
        return self.processes[node_id].pid

    def logs(self) -> str:
        return "\n".join(
            f"== {n.id}\n{n.log_file.read_text(errors='replace')[-3000:]}"
            for n in self.nodes
            if n.log_file.exists()
        )

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
