"""A node reached over SSH with Fabric (netns, ssh and vagrant runtimes).

Host keys are pinned: the connection loads the cluster's own known_hosts and rejects any host key
that is missing from it or differs (never ``StrictHostKeyChecking=no``). Non-root users run every
command through ``sudo -n`` so the same commands (iptables, kill) work on Vagrant boxes.
"""

from __future__ import annotations

import logging
import shlex
import threading
import uuid
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from bench.cluster.inventory import NodeSpec, SpecNode
from lockbench.errors import ClusterError
from lockbench.protocols import CommandResult, NodeError

CONNECT_TIMEOUT_S = 10
# paramiko logs every connect and authentication at INFO: noise in the bench's log.
logging.getLogger("paramiko").setLevel(logging.WARNING)


class NodeUnreachable(ClusterError):
    """The node's SSH server could not be reached or refused us; the message says why."""


def connect_kwargs(spec: NodeSpec) -> dict[str, object]:
    """paramiko's connect options for a node: its key file, else the agent and default keys.

    Fabric iterates ``key_filename``, so it is left out (not None) when the node names no key.
    """
    kwargs: dict[str, object] = {
        "look_for_keys": spec.key_file is None,
        "allow_agent": spec.key_file is None,
        "banner_timeout": CONNECT_TIMEOUT_S,
        "auth_timeout": CONNECT_TIMEOUT_S,
    }
    if spec.key_file is not None:
        kwargs["key_filename"] = spec.key_file
    return kwargs


class SshNode(SpecNode):
    """One node driven over a single, lazily opened SSH connection (shared by threads)."""

    def __init__(self, spec: NodeSpec, known_hosts: Path | None) -> None:
        super().__init__(spec)
        self._known_hosts = known_hosts
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def __repr__(self) -> str:
        return f"SshNode({self.spec.name}@{self.spec.address}:{self.spec.ssh_port})"

    def _where(self) -> str:
        return f"{self.spec.name} ({self.spec.user}@{self.spec.address}:{self.spec.ssh_port})"

    def connection(self) -> Connection:
        """The open Fabric connection, opened on first use with the pinned host keys."""
        with self._lock:
            if self._connection is not None and self._connection.is_connected:
                return self._connection
            if self.spec.key_file is not None and not Path(self.spec.key_file).is_file():
                raise NodeUnreachable(f"{self._where()}: key file {self.spec.key_file} not found")
            connection = Connection(
                host=self.spec.address,
                user=self.spec.user,
                port=self.spec.ssh_port,
                connect_timeout=CONNECT_TIMEOUT_S,
                config=Config(overrides={"load_ssh_configs": False}),
                connect_kwargs=connect_kwargs(self.spec),
            )
            client = connection.client
            if self._known_hosts is not None:
                try:
                    client.load_host_keys(str(self._known_hosts))
                except OSError as exc:
                    raise NodeUnreachable(
                        f"{self._where()}: cannot read known_hosts {self._known_hosts}: {exc}"
                    ) from exc
            else:
                client.load_system_host_keys()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                connection.open()
            except paramiko.BadHostKeyException as exc:
                raise NodeUnreachable(
                    f"{self._where()}: host key differs from the one pinned in "
                    f"{self._known_hosts or '~/.ssh/known_hosts'} (was the node recreated? "
                    "run `lockbench cluster down` and `up` again)"
                ) from exc
            except paramiko.AuthenticationException as exc:
                raise NodeUnreachable(
                    f"{self._where()}: authentication failed with key "
                    f"{self.spec.key_file or '(agent/default keys)'}: wrong key or user"
                ) from exc
            except TimeoutError as exc:
                raise NodeUnreachable(
                    f"{self._where()}: SSH connect timed out after {CONNECT_TIMEOUT_S} s "
                    "(host down or a firewall drops the packets)"
                ) from exc
            except paramiko.ssh_exception.NoValidConnectionsError as exc:
                causes = sorted(
                    {getattr(e, "strerror", None) or str(e) for e in exc.errors.values()}
                )
                raise NodeUnreachable(
                    f"{self._where()}: cannot connect: {', '.join(causes) or exc} "
                    "(is sshd running there, on that port?)"
                ) from exc
            except OSError as exc:
                raise NodeUnreachable(
                    f"{self._where()}: cannot connect: {exc.strerror or exc}"
                ) from exc
            except paramiko.SSHException as exc:
                reason = str(exc)
                if "known_hosts" in reason:
                    reason = (
                        f"host key not pinned in {self._known_hosts or '~/.ssh/known_hosts'} "
                        "(refusing an unknown host)"
                    )
                raise NodeUnreachable(f"{self._where()}: SSH failed: {reason}") from exc
            self._connection = connection
            return connection

    def _wrap(self, command: str) -> str:
        if self.spec.user == "root":
            return command
        return f"sudo -n bash -c {shlex.quote(command)}"

    @property
    def timeout_scale(self) -> float:
        """Every wait on this node grows by this factor (lockbench.protocols.timeout_scale)."""
        return self.spec.timeout_scale

    def run(self, command: str, *, timeout: float = 30.0, check: bool = True) -> CommandResult:
        timeout *= self.spec.timeout_scale
        connection = self.connection()
        try:
            result = connection.run(
                self._wrap(command),
                hide=True,
                warn=True,
                in_stream=False,
                timeout=max(1, round(timeout)),
            )
        except CommandTimedOut as exc:
            raise NodeError(self.name, f"timed out after {timeout} s: {command}") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._drop()
            raise NodeError(self.name, f"SSH failed while running {command!r}: {exc}") from exc
        outcome = CommandResult(
            command=command,
            exit_code=int(result.exited),
            stdout=str(result.stdout),
            stderr=str(result.stderr),
        )
        if check and not outcome.ok:
            detail = outcome.stderr.strip() or outcome.stdout.strip()
            raise NodeError(
                self.name, f"command failed (exit {outcome.exit_code}): {command}: {detail}"
            )
        return outcome

    def put(self, local: Path, remote: str) -> None:
        """Upload a file; non-root users upload to /tmp and move it in place with sudo."""
        target = remote if self.spec.user == "root" else f"/tmp/lockbench-up-{uuid.uuid4().hex}"
        try:
            self.connection().put(str(local), target)
        except (OSError, paramiko.SSHException) as exc:
            raise NodeError(self.name, f"upload of {local} to {remote} failed: {exc}") from exc
        if target != remote:
            self.run(f"mv {shlex.quote(target)} {shlex.quote(remote)}")

    def get(self, remote: str, local: Path) -> None:
        """Download a file; for non-root users a readable copy is made with sudo first."""
        local.parent.mkdir(parents=True, exist_ok=True)
        source = remote
        if self.spec.user != "root":
            source = f"/tmp/lockbench-down-{uuid.uuid4().hex}"
            self.run(
                f"cp {shlex.quote(remote)} {source} && chown {shlex.quote(self.spec.user)} {source}"
            )
        try:
            self.connection().get(source, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise NodeError(self.name, f"download of {remote} to {local} failed: {exc}") from exc
        finally:
            if source != remote:
                self.run(f"rm -f {source}", check=False)

    def _drop(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def close(self) -> None:
        """Close the SSH connection; the next command reopens it."""
        self._drop()
