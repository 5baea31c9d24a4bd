#!/usr/bin/env bash
# Provision one lockbench node (Debian 12): what deployment and every nemesis need.
#   python3, python3-venv, python3-pip, python3-yaml: the node venv (--system-site-packages)
#   python3-uvloop: lockd's faster event loop (optional: without it lockd runs the standard one)
#   iptables, iproute2 (tc netem): partitions and network shaping
#   chrony: the time sync the clock nemesis stops while it steps the VM's own clock
#   etcd-server: the etcd backend's server (its packaged service stays disabled)
# The bench's own box (scripts/build-vm-box.sh) has all of it already: then nothing is fetched,
# which matters because its VMs have no way out of the bench's network namespace.
set -euo pipefail
node="${1:?usage: provision.sh NODE_NAME}"
packages=(python3 python3-venv python3-pip python3-yaml python3-uvloop iptables iproute2 chrony
          etcd-server)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  systemctl disable --now etcd.service 2>/dev/null || true
fi
modprobe sch_netem || echo "provision: sch_netem module not available; netem faults will fail" >&2
install -d -m 0755 "/var/lib/lockbench/${node}"
