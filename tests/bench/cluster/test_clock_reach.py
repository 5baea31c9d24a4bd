"""Whether a clock fault can reach a backend's servers is decided before the run, from their ELF.

A Go server (Debian's etcd, dynamically linked through cgo) and a static one are refused with the
reason; Python, the JVM and a dynamically linked C program are reachable; a backend that names no
programs gets no verdict (None), and a runtime without clock faults is refused for that reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bench.cluster import ClusterHandle, open_cluster
from bench.cluster.local import local_down, local_up
from bench.runner.cluster_setup import InProcessCluster
from lockbench.clock_preload import can_build_library
from lockbench.clock_reach import clock_reach, require_clock_reach
from lockbench.errors import ConfigError
from lockbench.protocols import Node
from tests.bench.cluster.cluster_names import LOCAL_BASE_OFFSET

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not can_build_library(), reason="no C compiler: the local runtime has no clock faults"
    ),
]


class Servers:
    """The part of a backend the check reads: its name and its server programs."""

    def __init__(self, name: str, programs: Sequence[str]) -> None:
        self.name = name
        self.programs = list(programs)

    def server_programs(self, node: Node) -> list[str]:
        return self.programs


class Unnamed:
    name = "mystery"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterHandle]:
    with open_cluster(local_up(tmp_path / "c", base_offset=LOCAL_BASE_OFFSET)) as handle:
        yield handle
    local_down(tmp_path / "c")


def _compile(tmp_path: Path, *flags: str) -> Path:
    source = tmp_path / "server.c"
    source.write_text("#include <time.h>\nint main(void) { return time(0) < 0; }\n")
    binary = tmp_path / ("server" + "".join(flags).replace("-", "_"))
    result = subprocess.run(["gcc", *flags, "-o", str(binary), str(source)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"gcc {' '.join(flags)} failed here: {result.stderr.decode()[-200:]}")
    return binary


@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd (Debian etcd-server) not installed")
def test_a_go_server_is_refused_with_the_reason(cluster: ClusterHandle) -> None:
    reach = clock_reach(Servers("etcd", ["etcd"]), cluster)  # type: ignore[arg-type]
    assert reach.reachable is False
    assert reach.reason.startswith("clock fault cannot reach etcd on this runtime (local): ")
    assert "is a Go program" in reach.reason
    assert "vDSO" in reach.reason
    assert {p.kind for p in reach.programs} == {"go"}
    assert len(reach.programs) == 5
    with pytest.raises(ConfigError, match="clock fault cannot reach etcd"):
        require_clock_reach(Servers("etcd", ["etcd"]), cluster)  # type: ignore[arg-type]


def test_a_static_server_is_refused_with_the_reason(cluster: ClusterHandle, tmp_path: Path) -> None:
    binary = _compile(tmp_path, "-static")
    reach = clock_reach(Servers("staticd", [str(binary)]), cluster)  # type: ignore[arg-type]
    assert reach.reachable is False
    assert "statically linked" in reach.reason
    assert str(binary) in reach.reason


def test_python_jvm_and_dynamic_c_servers_are_reachable(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    programs = [sys.executable, str(_compile(tmp_path))]
    if shutil.which("java"):
        programs.append("java")
    reach = clock_reach(Servers("mixed", programs), cluster)  # type: ignore[arg-type]
    assert reach.reachable is True, reach.reason
    assert {p.kind for p in reach.programs} == {"dynamic"}
    assert reach.to_json()["programs"][0]["kind"] == "dynamic"


def test_a_script_is_followed_to_its_interpreter(cluster: ClusterHandle, tmp_path: Path) -> None:
    script = tmp_path / "serve"
    script.write_text(f"#!/usr/bin/env {Path(sys.executable).name}\nprint('hi')\n")
    script.chmod(0o755)
    reach = clock_reach(Servers("scripted", [str(script)]), cluster)  # type: ignore[arg-type]
    assert reach.reachable is True, reach.reason
    assert reach.programs[0].path is not None
    assert "python" in reach.programs[0].path


def test_a_missing_program_is_refused_unless_it_may_still_be_deployed(
    cluster: ClusterHandle,
) -> None:
    backend = Servers("ghost", ["/opt/none/ghostd"])
    assert clock_reach(backend, cluster, missing_ok=True).reachable is True  # type: ignore[arg-type]
    reach = clock_reach(backend, cluster)  # type: ignore[arg-type]
    assert reach.reachable is False
    assert "/opt/none/ghostd not found on n1" in reach.reason


def test_a_backend_naming_no_programs_gets_no_verdict(cluster: ClusterHandle) -> None:
    reach = clock_reach(Unnamed(), cluster)  # type: ignore[arg-type]
    assert reach.reachable is None
    assert "names no server programs" in reach.reason
    require_clock_reach(Unnamed(), cluster)  # type: ignore[arg-type]  # not refused


def test_a_runtime_without_clock_faults_is_refused(tmp_path: Path) -> None:
    reach = clock_reach(Servers("etcd", ["etcd"]), InProcessCluster(tmp_path))  # type: ignore[arg-type]
    assert reach.reachable is False
    assert reach.reason == (
        "clock fault cannot reach etcd on this runtime (none): "
        "the none runtime cannot inject clock faults here"
    )
