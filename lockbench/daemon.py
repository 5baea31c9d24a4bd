"""Daemons on nodes, managed only through ``Node.run`` so every runtime and backend shares it.

A daemon ``name`` on a node has a pidfile ``{data_dir}/{name}.pid`` and a log
``{data_dir}/{name}.log`` (stdout and stderr, appended). It is started in its own session
(``setsid``) so it outlives the SSH command that started it. On a node armed for clock faults
(``lockbench.clock_preload``: the offset file ``{data_dir}/clock.offset`` exists) it starts
under the bench's wall-clock library, which reads that file; on any other node, or with
``faketime=False``, it starts plain: no preload at all.

The pidfile belongs to this module alone: the daemon must not be given it. lockd used to rewrite
it (truncate, then write) while the start script polled it; a read in between looked like a dead
daemon, the script deleted the pidfile, and lockd ran on untracked and outlived ``cluster down``.
So the pidfile is written atomically (rename), starts of one daemon on one node are serialised
with ``flock`` where available, and the start script watches the pid it launched, never a re-read
of the file.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from lockbench.clock_preload import OFFSET_ENV, node_library_path, offset_path
from lockbench.errors import ClusterError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node, timeout_scale

log = logging.getLogger(__name__)

# How long a daemon must stay alive after start before we call it started (when no ready port).
STARTUP_GRACE_S = 0.3
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class DaemonError(ClusterError):
    """A daemon could not be started or stopped; names the node, the daemon and the cause."""


def pidfile_path(node: Node, name: str) -> str:
    return f"{node.data_dir}/{name}.pid"


def realtime_marker_path(node: Node, name: str) -> str:
    """Exists while daemon ``name`` was last started with ``faketime=False`` (a helper)."""
    return f"{node.data_dir}/.{name}.realtime"


def log_path(node: Node, name: str) -> str:
    return f"{node.data_dir}/{name}.log"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"daemon name {name!r} must match {_NAME.pattern}")


# Shell fragment: sets $pid to the live (not zombie) pid from $pidfile, or fails.
_LIVE_PID = (
    'live_pid() { pid=$(cat "$pidfile" 2>/dev/null) || return 1; [ -n "$pid" ] || return 1; '
    'kill -0 "$pid" 2>/dev/null || return 1; '
    '! grep -q "^State:[[:space:]]*Z" "/proc/$pid/status" 2>/dev/null; }'
)


def start_daemon(
    node: Node,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    faketime: bool = True,
    ready_port: int | None = None,
    ready_timeout: float = 15.0,
) -> int:
    """Start ``argv`` as daemon ``name`` on the node; returns its pid.

    Refuses if it is already running, if the program is missing, if ``ready_port`` is already
    taken, or if it dies on start (the log's tail is in the error). With ``ready_port`` it waits
    until the port on ``node.address`` accepts connections.
    """
    _check_name(name)
    if not argv:
        raise ValueError("start_daemon needs a command")
    ready_timeout *= timeout_scale(node)
    where = f"{node.name}: daemon {name}"
    variables = dict(env or {})
    data_dir = shlex.quote(node.data_dir)
    pidfile = shlex.quote(pidfile_path(node, name))
    logfile = shlex.quote(log_path(node, name))
    program = shlex.quote(argv[0])
    startlock = shlex.quote(f"{node.data_dir}/.{name}.start-lock")
    lines = [
        _LIVE_PID,
        f"pidfile={pidfile}",
        f"mkdir -p {data_dir}",
        # one start of this daemon at a time (two would race for the pidfile and the ports)
        f"if command -v flock >/dev/null 2>&1; then exec 9>>{startlock}; flock -w 30 9; fi",
        'if live_pid; then echo "ALREADY $pid"; exit 0; fi',
        f"command -v {program} >/dev/null 2>&1 || {{ echo MISSING; exit 0; }}",
    ]
    if ready_port is not None:
        probe = f"/dev/tcp/{node.address}/{ready_port}"
        lines.append(f"if (exec 3<>{probe}) 2>/dev/null; then echo TAKEN; exit 0; fi")
    realtime = shlex.quote(realtime_marker_path(node, name))
    if faketime:
        # armed (the offset file exists): under the wall-clock library; its absence is an error
        lines += [
            f"offset={shlex.quote(offset_path(node))}",
            f"lib={shlex.quote(node_library_path(node))}",
            'armed=; if [ -e "$offset" ]; then armed=1; fi',
            'if [ -n "$armed" ] && [ ! -e "$lib" ]; then echo NOCLOCKLIB; exit 0; fi',
            f"rm -f {realtime}",
        ]
    else:
        # a helper on the real clock: the clock nemesis's reach check must not expect the library
        lines += ["armed=", f": > {realtime}"]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(variables.items()))
    preload = f'"LD_PRELOAD=$lib" "{OFFSET_ENV}=$offset"'
    command = " ".join(shlex.quote(a) for a in argv)
    # 9>&-: the daemon must not inherit (and so hold) the start lock
    launch = f">> {logfile} 2>&1 < /dev/null 9>&- &"
    lines += [
        f"cd {data_dir}",
        'how=; [ -n "$armed" ] && how=" (wall clock: lockbench clock library, $offset)"',
        f'echo "=== start $(date -u +%FT%TZ): "{shlex.quote(command)}"$how" >> {logfile}',
        'if [ -n "$armed" ]; then',
        f"  setsid env {assignments} {preload} {command} {launch}",
        "else",
        f"  setsid env {assignments} {command} {launch}",
        "fi",
        "pid=$!",
        'echo "$pid" > "$pidfile.new" && mv -f "$pidfile.new" "$pidfile"',
        # the launched process itself, not whatever the pidfile says by now
        'launched_alive() { kill -0 "$pid" 2>/dev/null && '
        '! grep -q "^State:[[:space:]]*Z" "/proc/$pid/status" 2>/dev/null; }',
    ]
    if ready_port is not None:
        tries = max(1, int(ready_timeout / 0.1))
        lines += [
            f"for i in $(seq {tries}); do",
            '  launched_alive || { rm -f "$pidfile"; echo DIED; exit 0; }',
            f'  if (exec 3<>{probe}) 2>/dev/null; then echo "STARTED $pid"; exit 0; fi',
            "  sleep 0.1",
            "done",
            'echo "NOTREADY $pid"',
        ]
    else:
        lines += [
            f"sleep {STARTUP_GRACE_S}",
            'if launched_alive; then echo "STARTED $pid"; else rm -f "$pidfile"; echo DIED; fi',
        ]
    result = node.run("\n".join(lines), timeout=ready_timeout + 15)
    words = result.stdout.split()
    status = words[-2] if len(words) >= 2 and words[-2] in ("STARTED", "NOTREADY") else None
    last = words[-1] if words else ""
    if status == "STARTED":
        return int(last)
    if len(words) >= 2 and words[-2] == "ALREADY":
        raise DaemonError(f"{where} is already running (pid {last}); stop it first")
    if last == "MISSING":
        raise DaemonError(f"{where}: program {argv[0]} not found on the node (not deployed?)")
    if last == "TAKEN":
        raise DaemonError(
            f"{where}: port {ready_port} on {node.address} is already taken by another process"
        )
    if last == "NOCLOCKLIB":
        raise DaemonError(
            f"{where}: the node is armed for clock faults ({offset_path(node)} exists) but the "
            f"wall-clock library {node_library_path(node)} is missing; arm it again "
            "(lockbench.clock_preload.arm_clock) or remove the offset file"
        )
    tail = node.run(f"tail -n 15 {logfile}", check=False).stdout.strip()
    if status == "NOTREADY":
        stop_daemon(node, name)
        raise DaemonError(
            f"{where}: port {ready_port} not open after {ready_timeout} s; stopped it. "
            f"Log tail:\n{tail}"
        )
    raise DaemonError(
        f"{where} exited right after start. Log tail ({log_path(node, name)}):\n{tail}"
    )


def daemon_pid(node: Node, name: str) -> int | None:
    """The daemon's pid if it runs (a paused daemon runs); None otherwise."""
    _check_name(name)
    script = (
        f'{_LIVE_PID}\npidfile={shlex.quote(pidfile_path(node, name))}\nlive_pid && echo "$pid"'
    )
    out = node.run(script, check=False).stdout.strip()
    return int(out) if out.isdigit() else None


def signal_daemon(node: Node, name: str, sig: str) -> bool:
    """Send ``sig`` (KILL, STOP, CONT, TERM, ...) by pidfile; False if it was not running."""
    _check_name(name)
    if not sig.isalnum():
        raise ValueError(f"bad signal name {sig!r}")
    script = (
        f"{_LIVE_PID}\npidfile={shlex.quote(pidfile_path(node, name))}\n"
        f'live_pid && kill -{sig.upper()} "$pid" && echo SENT'
    )
    return node.run(script, check=False).stdout.strip() == "SENT"


def kill_daemon(node: Node, name: str, *, timeout: float = 5.0) -> bool:
    """kill -9 by pidfile and wait until the process is gone; False if it was not running."""
    _check_name(name)
    tries = max(1, int(timeout / 0.02))
    script = "\n".join(
        [
            _LIVE_PID,
            f"pidfile={shlex.quote(pidfile_path(node, name))}",
            "live_pid || exit 0",
            'kill -KILL "$pid" && echo SENT',
            f"for i in $(seq {tries}); do live_pid || exit 0; sleep 0.02; done",
            'echo "STILL $pid"',
        ]
    )
    out = node.run(script, timeout=timeout + 10).stdout
    if "STILL" in out:
        raise DaemonError(f"{node.name}: daemon {name} survived SIGKILL for {timeout} s")
    return "SENT" in out


def stop_daemon(node: Node, name: str, *, timeout: float = 5.0) -> None:
    """TERM (and CONT, in case it is paused), then KILL after ``timeout``; removes the pidfile."""
    _check_name(name)
    tries = max(1, int(timeout / 0.05))
    script = "\n".join(
        [
            _LIVE_PID,
            f"pidfile={shlex.quote(pidfile_path(node, name))}",
            "if live_pid; then",
            '  kill -TERM "$pid"; kill -CONT "$pid" 2>/dev/null',
            f"  for i in $(seq {tries}); do live_pid || break; sleep 0.05; done",
            '  if live_pid; then kill -KILL "$pid"; echo KILLED; fi',
            "  for i in $(seq 40); do live_pid || break; sleep 0.05; done",
            "fi",
            'live_pid && { echo "STILL $pid"; exit 0; }',
            'rm -f "$pidfile"',
        ]
    )
    result = node.run(script, timeout=timeout + 10)
    if "STILL" in result.stdout:
        raise DaemonError(f"{node.name}: daemon {name} survived SIGKILL ({result.stdout.strip()})")
    if "KILLED" in result.stdout:
        log.info("%s: daemon %s ignored TERM for %.1f s; killed", node.name, name, timeout)


def _fetch_node_logs(node: Node, dest: Path) -> list[Path]:
    listing = node.run(f"ls -1 {shlex.quote(node.data_dir)}/*.log 2>/dev/null || true", check=False)
    fetched: list[Path] = []
    for remote in listing.stdout.splitlines():
        local = dest / node.name / Path(remote).name
        node.get(remote, local)
        fetched.append(local)
    return fetched


def fetch_logs(cluster: Cluster, dest: Path, *, nodes: Sequence[Node] | None = None) -> list[Path]:
    """Copy every node's ``{data_dir}/*.log`` to ``dest/<node>/``, all nodes in parallel.

    ``nodes``: only these (e.g. leaving out nodes already known unreachable).
    """
    chosen = list(cluster.nodes if nodes is None else nodes)
    per_node = on_each_node("fetching logs", chosen, lambda node: _fetch_node_logs(node, dest))
    return [path for node in chosen for path in per_node[node.name]]


# The power-loss fault's filesystem (nemesis/lazyfs.py) keeps a mounted directory's data beside it
# in ``<dir>.lazyfs-backing`` and puts it back when it stops; killed, it leaves a dead mount.
LAZYFS_BACKING_SUFFIX = ".lazyfs-backing"


def detach_fuse_mounts_command(data_dir: str) -> str:
    """Shell that detaches every FUSE mount under ``data_dir`` (only the bench mounts there)
    and moves a power-loss filesystem's backing directory back in place."""
    prefix = shlex.quote(data_dir.rstrip("/") + "/")
    return (
        f"awk -v d={prefix} '$3 ~ /^fuse/ && index($2, d) == 1 {{print $2}}' /proc/self/mounts "
        '| while read -r m; do umount -l "$m"; '
        f'b="$m{LAZYFS_BACKING_SUFFIX}"; '
        'if [ -d "$b" ]; then rmdir "$m" 2>/dev/null; [ -e "$m" ] || mv "$b" "$m"; fi; '
        'rm -rf "$m.lazyfs-trash"; echo "$m"; done; true'
    )


def kill_all_daemons(node: Node) -> list[str]:
    """kill -9 every live daemon with a pidfile in the node's data_dir, then detach the mounts a
    killed power-loss filesystem left; returns what it killed and detached."""
    script = "\n".join(
        [
            _LIVE_PID,
            f"for pidfile in {shlex.quote(node.data_dir)}/*.pid; do",
            '  [ -e "$pidfile" ] || continue',
            '  if live_pid; then kill -KILL "$pid" && echo "$(basename "$pidfile" .pid) $pid"; fi',
            '  rm -f "$pidfile"',
            "done",
            "echo MOUNTS",
            detach_fuse_mounts_command(node.data_dir),
        ]
    )
    out = node.run(script, check=False).stdout
    killed, _, mounts = out.partition("MOUNTS\n")
    return [f"{node.name}: daemon {line}" for line in killed.splitlines() if line.strip()] + [
        f"{node.name}: mount {line}" for line in mounts.splitlines() if line.strip()
    ]
