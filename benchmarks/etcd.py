"""etcd as a benchmarked system: five real members (Debian etcd-server 3.4) on loopback, driven
through the JSON gateway by a small asyncio client that fits the driver's ``BenchClient``.

``benchmarks.lockd`` runs it side by side with lockd; nothing here knows about lockd.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.drivers.lock_load import BenchClient, Connect, gap_after_kill

ETCD_BASE_PORT = 25000  # etcd at 25000+, lockd at 25500+ (benchmarks.lockd)
ETCD_BINARY = "/usr/bin/etcd"


def etcd_connect(endpoints: list[str]) -> Connect:
    """A ``Connect`` opening one etcd lease (30 s TTL) per client."""

    async def connect() -> BenchClient:
        return await EtcdLockClient.connect(endpoints, ttl=30)

    return connect


class EtcdError(RuntimeError):
    """An etcd gateway call failed (HTTP status and body in the message)."""


class EtcdHttp:
    """One keep-alive HTTP/1.1 connection to an etcd member's JSON gateway (asyncio, no deps)."""

    def __init__(self, endpoint: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, endpoint: str, timeout: float = 2.0) -> EtcdHttp:
        host, port = endpoint.rsplit(":", 1)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, int(port))
        return cls(endpoint, reader, writer)

    async def post(self, path: str, body: dict[str, object], timeout: float) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.endpoint}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self._writer.write(head.encode() + payload)
        async with asyncio.timeout(timeout):
            status_line = await self._reader.readline()
            if not status_line:
                raise EtcdError(f"{self.endpoint} closed the connection")
            length, chunked = 0, False
            while (line := await self._reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                parts = []
                while size := int((await self._reader.readline()).split(b";")[0], 16):
                    parts.append(await self._reader.readexactly(size))
                    await self._reader.readline()
                await self._reader.readline()
                data = b"".join(parts)
            else:
                data = await self._reader.readexactly(length)
        status = int(status_line.split()[1])
        if status != 200:
            raise EtcdError(f"{self.endpoint} {path}: HTTP {status}: {data[:200]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdLockClient:
    """The etcd counterpart of AsyncLockClient for the bench: a lease, lock and unlock."""

    def __init__(self, endpoints: list[str], timeout: float) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.http: EtcdHttp | None = None
        self.lease = ""
        self.keys: dict[str, str] = {}

    @classmethod
    async def connect(
        cls, endpoints: list[str], *, ttl: int = 30, timeout: float = 10.0
    ) -> EtcdLockClient:
        client = cls(endpoints, timeout)
        granted = await client._call("/v3/lease/grant", {"TTL": str(ttl)})
        client.lease = str(granted["ID"])
        return client

    async def _call(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        for endpoint in self.endpoints:
            try:
                if self.http is None:
                    self.http = await EtcdHttp.connect(endpoint)
                return await self.http.post(path, body, self.timeout)
            except (OSError, TimeoutError, EtcdError, asyncio.IncompleteReadError, ValueError):
                if self.http is not None:
                    await self.http.close()
                    self.http = None
        raise EtcdError(f"{path}: no member of {self.endpoints} answered")

    async def acquire(self, name: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        result = await self._call("/v3/lock/lock", {"name": b64(name), "lease": self.lease})
        self.keys[name] = str(result["key"])

    async def release(self, name: str) -> None:
        await self._call("/v3/lock/unlock", {"key": self.keys.pop(name)})

    async def close(self) -> None:
        if self.http is not None:
            with contextlib.suppress(EtcdError, OSError, TimeoutError):
                await self.http.post("/v3/lease/revoke", {"ID": self.lease}, 2.0)
            await self.http.close()
            self.http = None


class EtcdCluster:
    """Five etcd members on loopback, each with its own data dir (fsync on, etcd's default).

    Member i listens for clients on ``base_port + 10*i`` and for peers on ``+1``. Stopped by PID
    (SIGTERM, then SIGKILL); the data dirs live under ``directory`` and are removed on exit.
    """

    def __init__(self, directory: Path, *, size: int = 5, base_port: int = ETCD_BASE_PORT):
        self.directory = directory
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client_ports = {n: base_port + 10 * i for i, n in enumerate(self.names)}
        self.peer_ports = {n: base_port + 10 * i + 1 for i, n in enumerate(self.names)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def endpoint(self, name: str) -> str:
        return f"127.0.0.1:{self.client_ports[name]}"

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in self.names]

    def start(self, name: str) -> None:
        peers = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        client_url = f"http://{self.endpoint(name)}"
        peer_url = f"http://127.0.0.1:{self.peer_ports[name]}"
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [ETCD_BINARY, "--name", name, "--data-dir", str(self.directory / f"{name}.etcd"),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", peers, "--initial-cluster-state", "new",
             "--initial-cluster-token", "lockbench-bench", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def start_all(self, timeout: float = 30.0) -> str:
        for name in self.names:
            self.start(name)
        return self.wait_for_leader(timeout)

    def leader(self) -> str | None:
        """The member that reports itself as leader (maintenance/status), or None."""
        for name in self.names:
            if name in self.processes and self.processes[name].poll() is None:
                try:
                    status = _http_json(f"http://{self.endpoint(name)}/v3/maintenance/status", {})
                except (OSError, ValueError):
                    continue
                if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                    return name
        return None

    def wait_for_leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (leader := self.leader()) is not None:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no etcd leader within {timeout}s; see {self.directory}/*.log")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = {}
        for name in self.names:
            shutil.rmtree(self.directory / f"{name}.etcd", ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def _http_json(url: str, body: dict[str, object], timeout: float = 1.0) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def etcd_failover(cluster: EtcdCluster) -> float:
    leader = await asyncio.to_thread(cluster.wait_for_leader)
    survivors = [cluster.endpoint(n) for n in cluster.names if n != leader]
    client = await EtcdLockClient.connect([*survivors, cluster.endpoint(leader)], timeout=1.0)
    gap = await gap_after_kill(client, lambda: cluster.kill(leader), (EtcdError, KeyError))
    cluster.start(leader)
    await asyncio.to_thread(cluster.wait_for_leader)
    await asyncio.sleep(1.0)  # let the restarted member catch up before the next trial
    return gap
