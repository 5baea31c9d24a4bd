"""KVM or TCG for the vagrant runtime's VMs: decided by booting the box's kernel, not assumed.

On some machines ``/dev/kvm`` answers but a KVM guest hangs right after decompression (see
docs/runtimes.md); software emulation (TCG) is slow but boots. So the choice is a probe: the
box's own kernel under ``qemu-system-x86_64 -accel kvm`` with no disk and no NIC must reach its
"cannot mount root" panic within a few seconds; if it does not, the VMs run under TCG. The answer
is cached per kernel and qemu binary (``~/.cache/lockbench/vm/accel.json``);
``LOCKBENCH_VM_ACCEL=kvm|tcg`` overrides the probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "/usr/bin/qemu-system-x86_64"
PROBE_TIMEOUT_S = 8.0
# What the kernel prints when it gets as far as looking for its root filesystem.
BOOTED_MARKERS = ("VFS: Unable to mount root", "Kernel panic")
ACCEL_ENV = "LOCKBENCH_VM_ACCEL"


@dataclass(frozen=True, slots=True)
class AccelChoice:
    """``driver`` is libvirt's domain type: ``kvm`` or ``qemu`` (TCG)."""

    driver: str
    reason: str

    @property
    def label(self) -> str:
        return "KVM" if self.driver == "kvm" else "TCG (software emulation)"


def _probe_key(kernel: Path) -> str:
    kstat, qstat = kernel.stat(), Path(QEMU).stat()
    return f"{kernel}:{kstat.st_size}:{kstat.st_mtime_ns}:{qstat.st_mtime_ns}:{os.uname().release}"


def kvm_boots(kernel: Path, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM (no disk, no NIC); True if it reaches its root-mount panic."""
    argv = [
        QEMU, "-accel", "kvm", "-m", "128", "-nodefaults", "-nic", "none", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1 loglevel=4",
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=10)
    text = output.decode(errors="replace")
    elapsed = time.monotonic() - started
    if any(marker in text for marker in BOOTED_MARKERS):
        return True, f"a KVM guest booted the box's kernel to its root mount in {elapsed:.1f} s"
    console = [line for line in text.strip().splitlines() if not line.startswith("qemu-system")]
    last = console[-1] if console else "no console output"
    return False, (
        f"a KVM guest did not reach its root mount within {timeout:.0f} s (last: {last[:100]!r})"
    )


def choose_accel(kernel: Path, cache_file: Path) -> AccelChoice:
    """KVM if it demonstrably boots here, TCG otherwise; the reason says which and why."""
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced in ("kvm", "tcg"):
        driver = "kvm" if forced == "kvm" else "qemu"
        return AccelChoice(driver, f"{ACCEL_ENV}={forced}")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("qemu", "/dev/kvm is missing or not accessible")
    if not kernel.is_file() or not Path(QEMU).exists():
        return AccelChoice("qemu", f"cannot probe KVM ({kernel} or {QEMU} missing)")
    key = _probe_key(kernel)
    cached: dict[str, dict[str, str]] = {}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache_file.read_text())
    if key in cached:
        entry = cached[key]
        return AccelChoice(entry["driver"], f"{entry['reason']} (probed earlier, cached)")
    works, reason = kvm_boots(kernel)
    choice = AccelChoice("kvm" if works else "qemu", reason)
    cached[key] = {"driver": choice.driver, "reason": reason}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(cached, indent=2))
    return choice
