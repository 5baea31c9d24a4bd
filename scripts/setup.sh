#!/usr/bin/env bash
# Set up lockbench on this machine: system packages (when root on Debian/Ubuntu) and a virtual
# environment in .venv with the project installed in editable mode. Idempotent: a second run only
# checks. Says what it could not install and which part of the bench that disables.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)
VENV="${LOCKBENCH_VENV:-$ROOT_DIR/.venv}"
PYTHON="${PYTHON:-python3}"

# package -> what it enables (the bench degrades gracefully without the optional ones)
declare -A APT_PURPOSE=(
  [iproute2]="network-namespace clusters and tc netem faults"
  [iptables]="partition faults"
  [openssh-server]="sshd on every netns node"
  [openssh-client]="ssh-keygen for per-cluster keys"
  [libc6-dev]="clock-skew faults (builds the bench's wall-clock library, lockbench/lbclock.c)"
  [default-jdk-headless]="the JVM clock test (a Java server under the wall-clock library)"
  [etcd-server]="the etcd backend"
  [redis-server]="the Redis and Redlock backends"
  [zookeeper]="the ZooKeeper backend"
  [chromium]="browser tests of the HTML reports"
  [strace]="the power-loss filesystem's stop test (holds it at a system call's exit)"
  [prometheus]="promtool checks of the alerting rules"
  [python3]="the deployed server on netns nodes (a venv over the system python3)"
  [python3-venv]="the deployed server on netns nodes (a venv over the system python3)"
  [python3-pip]="the deployed server on netns nodes (a venv over the system python3)"
  [python3-yaml]="the deployed server on netns nodes (PyYAML from the system)"
  [python3-uvloop]="the deployed server's faster event loop on netns nodes (uvloop from the system)"
  [gcc]="clock-skew faults (the wall-clock library, lockbench/lbclock.c) and the checker's compiled search core (pure Python without it)"
  [python3-dev]="the checker's compiled search core (the checker runs in pure Python without it)"
)
APT_PACKAGES=(iproute2 iptables openssh-server openssh-client gcc libc6-dev etcd-server redis-server zookeeper
              default-jdk-headless chromium prometheus python3 python3-venv python3-pip python3-yaml python3-uvloop
              python3-dev strace)

say() { printf 'setup: %s\n' "$*"; }

install_system_packages() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "not root on Debian/Ubuntu: skipping system packages (root-only tests will skip)"
    return 0
  fi
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages already installed"
    return 0
  fi
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || say "apt-get update failed; trying with the current package lists"
  # Package scripts must not start their services (redis, etcd, zookeeper): the bench starts its own.
  local guard_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard_created=1
  fi
  if ! apt-get install -y -qq "${missing[@]}" >/tmp/lockbench-apt.log 2>&1; then
    say "bulk install failed; installing one by one"
    for pkg in "${missing[@]}"; do
      apt-get install -y -qq "$pkg" >>/tmp/lockbench-apt.log 2>&1 \
        || say "could not install $pkg: disables ${APT_PURPOSE[$pkg]} (see /tmp/lockbench-apt.log)"
    done
  fi
  [ "$guard_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
  mkdir -p /run/sshd
}

report_missing_tools() {
  local tool purpose
  for spec in "ip:iproute2" "iptables:iptables" "sshd:openssh-server" "ssh-keygen:openssh-client" \
              "gcc:gcc" "javac:default-jdk-headless" "etcd:etcd-server" "redis-server:redis-server" \
              "chromium:chromium" "promtool:prometheus"; do
    tool=${spec%%:*}; purpose=${APT_PURPOSE[${spec#*:}]}
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
      say "missing $tool: disables $purpose"
    fi
  done
  if [ ! -e /usr/share/zookeeper/bin/zkServer.sh ]; then
    say "missing zookeeper: disables ${APT_PURPOSE[zookeeper]}"
  fi
}

create_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.lockbench-installed" want
  # C sources count too: the editable install builds the compiled checker core in place.
  want=$(cat pyproject.toml setup.py $(find bench -name '*.c' | sort) | sha256sum | cut -d' ' -f1)
  local imports='import lockbench, bench, reference_impl'
  if command -v gcc >/dev/null 2>&1; then
    imports="$imports; import bench.checker._wgl_native"
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "$imports" 2>/dev/null; then
    say "project already installed in $VENV"
    return 0
  fi
  say "installing lockbench into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  if ! "$VENV/bin/python" -c 'import bench.checker._wgl_native' 2>/dev/null; then
    say "the checker's compiled search core did not build (gcc and python3-dev needed): using pure Python"
  fi
  echo "$want" > "$stamp"
}

build_clock_library() {
  # Compiled once per source version and cached (lockbench.clock_preload); runs copy it to nodes.
  local built
  if built=$("$VENV/bin/python" -c 'from lockbench.clock_preload import build_library; print(build_library())' 2>&1); then
    say "wall-clock library: $built"
  else
    say "could not build the wall-clock library: disables clock-skew faults ($built)"
  fi
}

install_system_packages
report_missing_tools
create_venv
build_clock_library
say "done: run .venv/bin/lockbench --help"
