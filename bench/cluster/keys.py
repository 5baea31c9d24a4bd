"""SSH keys and pinned host keys for a cluster (kept in its directory, 0600)."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import paramiko

from lockbench.errors import ClusterError

SCAN_TIMEOUT_S = 10.0


def generate_keypair(jobs: Sequence[tuple[Path, str]]) -> None:
    """Make an ed25519 key pair (``path`` and ``path.pub``, 0600) for each (path, comment)."""
    processes = [
        (
            path,
            subprocess.Popen(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for path, comment in jobs
    ]
    failures = []
    for path, process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            failures.append(f"{path}: {err.strip()}")
        else:
            path.chmod(0o600)
    if failures:
        raise ClusterError(f"control node: ssh-keygen failed: {'; '.join(failures)}")


def _host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_line(address: str, port: int, public_key_file: Path) -> str:
    """A known_hosts line pinning the host key in ``public_key_file`` for address:port."""
    key_type, key_data = public_key_file.read_text().split()[:2]
    return f"{_host_pattern(address, port)} {key_type} {key_data}\n"


def scan_host_key(name: str, address: str, port: int) -> str:
    """Fetch a host's key (trust on first use, at ``cluster up``) as a known_hosts line."""
    try:
        sock = socket.create_connection((address, port), timeout=SCAN_TIMEOUT_S)
    except OSError as exc:
        raise ClusterError(
            f"{name} ({address}:{port}): unreachable while recording its host key: "
            f"{exc.strerror or exc}"
        ) from exc
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = SCAN_TIMEOUT_S
        transport.start_client(timeout=SCAN_TIMEOUT_S)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ClusterError(f"{name} ({address}:{port}): SSH handshake failed: {exc}") from exc
    finally:
        transport.close()
    encoded = base64.b64encode(key.asbytes()).decode()
    return f"{_host_pattern(address, port)} {key.get_name()} {encoded}\n"
