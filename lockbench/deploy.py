"""Deployment: build the project's wheel once, install it into a venv on every node, in parallel.

The wheel is cached by version and a hash of the sources, so an unchanged tree is never rebuilt,
and each node's venv records the hash it holds, so an unchanged version is never reinstalled.
The node venv (``{data_dir}/venv``) is made from the node's own Python with
``--system-site-packages`` and installed with ``--no-deps``: the server's only third-party
dependency, PyYAML, comes from the system (Debian's python3-yaml, provisioned on VMs), so nodes
need no package index; so does uvloop where the system has it (python3-uvloop, optional).
Bytecode is not compiled at install: a node imports only the server's modules, so compiling them
on first import costs less than compiling the whole project five times.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lockbench.errors import ClusterError
from lockbench.parallel import on_each_node
from lockbench.protocols import Cluster, Node

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES: tuple[str, ...] = (
    "lockbench",
    "reference_impl",
    "bench",
    "nemesis",
    "workloads",
    "reports",
)
PACKAGE_DATA_SUFFIXES: frozenset[str] = frozenset(
    {".py", ".yml", ".yaml", ".js", ".html", ".css", ".typed"}
)
MARKER_FILE = ".lockbench-wheel"
INSTALL_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Wheel:
    """A built wheel of the project and the hash of the sources it was built from."""

    path: Path
    version: str
    digest: str


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockbench" / "wheels"


def _source_files(project_dir: Path) -> list[Path]:
    files = [project_dir / "pyproject.toml"]
    if (project_dir / "README.md").exists():
        files.append(project_dir / "README.md")
    for package in PACKAGES:
        for path in sorted((project_dir / package).rglob("*")):
            if (
                path.is_file()
                and path.suffix in PACKAGE_DATA_SUFFIXES
                and "__pycache__" not in path.parts
            ):
                files.append(path)
    return files


def _version(project_dir: Path) -> str:
    try:
        data = tomllib.loads((project_dir / "pyproject.toml").read_text())
        return str(data["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(f"{project_dir}/pyproject.toml: no project.version ({exc})") from exc


def _build_requires(project_dir: Path) -> list[str]:
    try:
        data = tomllib.loads((project_dir / "pyproject.toml").read_text())
        requires = data["build-system"]["requires"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(
            f"{project_dir}/pyproject.toml: no build-system.requires ({exc})"
        ) from exc
    return [str(r) for r in requires]


def _build_python(project_dir: Path, cache_dir: Path) -> Path:
    """A venv holding the build-system requirements, made once and reused.

    This is what pip's build isolation does on every build; keeping it saves most of a build.
    """
    requires = _build_requires(project_dir)
    env = cache_dir / "build-env"
    python = env / "bin" / "python"
    marker = env / "requires.txt"
    wanted = "\n".join(sorted(requires))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    shutil.rmtree(env, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(env)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requires],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            raise ClusterError(
                f"control node: preparing the wheel build environment failed "
                f"({' '.join(step[-3:])}): {result.stderr.strip()[-600:]}"
            )
    marker.write_text(wanted)
    return python


def build_wheel(project_dir: Path = PROJECT_ROOT, cache_dir: Path | None = None) -> Wheel:
    """The project's wheel, built from a clean copy of the sources unless cached already."""
    cache_dir = cache_dir or default_cache_dir()
    version = _version(project_dir)
    files = _source_files(project_dir)
    hasher = hashlib.sha256(version.encode())
    for path in files:
        hasher.update(str(path.relative_to(project_dir)).encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    digest = hasher.hexdigest()[:20]
    target = cache_dir / f"{version}-{digest}"
    cached = sorted(target.glob("*.whl")) if target.is_dir() else []
    if cached:
        return Wheel(path=cached[0], version=version, digest=digest)
    cache_dir.mkdir(parents=True, exist_ok=True)
    python = _build_python(project_dir, cache_dir)
    with tempfile.TemporaryDirectory(prefix="lockbench-build-") as tmp:
        source = Path(tmp) / "src"
        for path in files:
            copy = source / path.relative_to(project_dir)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        out = Path(tmp) / "out"
        result = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--disable-pip-version-check",
                "-q",
                "-w",
                str(out),
                str(source),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        built = sorted(out.glob("*.whl"))
        if result.returncode != 0 or not built:
            raise ClusterError(
                f"control node: building the lockbench wheel failed: {result.stderr.strip()[-800:]}"
            )
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
        shutil.move(str(built[0]), staging / built[0].name)
        try:
            staging.rename(target)
        except OSError:  # another process cached the same digest meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built %s", target)
    return Wheel(path=sorted(target.glob("*.whl"))[0], version=version, digest=digest)


def node_venv(node: Node) -> str:
    """Where the project is installed on a node."""
    return f"{node.data_dir}/venv"


def node_program(node: Node, program: str) -> str:
    """The absolute path of an installed console script (``lockd``, ``lockctl``) on a node."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", program):
        raise ValueError(f"bad program name {program!r}")
    return f"{node_venv(node)}/bin/{program}"


def installed_digest(node: Node) -> str | None:
    marker = shlex.quote(f"{node_venv(node)}/{MARKER_FILE}")
    out = node.run(f"cat {marker} 2>/dev/null || true", check=False).stdout.strip()
    return out or None


def install_on_node(node: Node, wheel: Wheel, python: str) -> bool:
    """Install the wheel into the node's venv; False (and nothing done) if already there."""
    if installed_digest(node) == wheel.digest:
        return False
    venv = shlex.quote(node_venv(node))
    data_dir = shlex.quote(node.data_dir)
    remote_wheel = f"{node.data_dir}/{wheel.path.name}"
    node.run(f"mkdir -p {data_dir}")
    check = node.run(
        f"{shlex.quote(python)} -c 'import venv, pip, yaml' 2>&1 || echo MISSING", check=False
    )
    if "MISSING" in check.stdout:
        cause = check.stdout.replace("MISSING", "").strip().splitlines() or ["not found"]
        raise ClusterError(
            f"{node.name}: {python} cannot make a venv with pip and PyYAML ({cause[-1]}); "
            "install python3, python3-venv, python3-pip and python3-yaml on the node"
        )
    node.put(wheel.path, remote_wheel)
    script = "\n".join(
        [
            "set -e",
            f"[ -x {venv}/bin/python ] || "
            f"{shlex.quote(python)} -m venv --system-site-packages --without-pip {venv}",
            f"{venv}/bin/python -m pip install --no-deps --force-reinstall --no-index "
            f"--disable-pip-version-check --no-compile -q {shlex.quote(remote_wheel)}",
            f"echo {wheel.digest} > {venv}/{MARKER_FILE}",
            f"rm -f {shlex.quote(remote_wheel)}",
        ]
    )
    node.run(script, timeout=INSTALL_TIMEOUT_S)
    return True


def _node_python(node: Node) -> str:
    spec = getattr(node, "spec", None)
    python = getattr(spec, "python", None)
    return python if isinstance(python, str) else "/usr/bin/python3"


def deploy_project(
    cluster: Cluster,
    wheel: Wheel | None = None,
    configure: Callable[[Node], None] | None = None,
) -> dict[str, bool]:
    """Install the project on every node in parallel, then ``configure(node)`` on each.

    Maps node name to "was (re)installed". Each node installs and configures in one thread, so
    a slow node never holds the others back between the two steps.
    """
    wheel = wheel or build_wheel()

    def install_and_configure(node: Node) -> bool:
        installed = install_on_node(node, wheel, _node_python(node))
        if configure is not None:
            configure(node)
        return installed

    return on_each_node("deploying lockbench", cluster.nodes, install_and_configure)


def write_node_file(
    node: Node, remote: str, text: str, *, mode: int = 0o644, require: Sequence[str] = ()
) -> bool:
    """Write a (configuration) file on a node unless it already has this content.

    ``require``: paths that must exist on the node (checked in the same round trip). Returns
    whether the file was written.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()
    quoted = shlex.quote(remote)
    checks = "".join(
        f"test -e {shlex.quote(p)} || echo MISSING {shlex.quote(p)}; " for p in require
    )
    probe = node.run(f"{checks}sha256sum {quoted} 2>/dev/null || true", check=False).stdout
    missing = [line.split(" ", 1)[1] for line in probe.splitlines() if line.startswith("MISSING ")]
    if missing:
        raise ClusterError(f"{node.name}: {', '.join(missing)} missing (deployment incomplete?)")
    current = [line for line in probe.splitlines() if not line.startswith("MISSING ")]
    if current and current[0].split()[0] == digest:
        return False
    with tempfile.NamedTemporaryFile("w", delete=False, prefix="lockbench-", suffix=".tmp") as tmp:
        tmp.write(text)
    try:
        node.run(f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
        node.put(Path(tmp.name), remote)
        node.run(f"chmod {mode:o} {quoted}")
    finally:
        os.unlink(tmp.name)
    return True
