#!/usr/bin/env bash
# Provision one lockbench node (Debian 12): what deployment and every nemesis need.
#   python3, python3-venv, python3-pip, python3-yaml: the node venv (--system-site-packages)
#   python3-uvloop: lockd's faster event loop (optional: without it lockd runs the standard one)
#   iptables, iproute2 (tc netem): partitions and network shaping
#   faketime: libfaketime for clock faults; chrony: time sync the clock nemesis may stop
set -euo pipefail
node="${1:?usage: provision.sh NODE_NAME}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  python3 python3-venv python3-pip python3-yaml python3-uvloop iptables iproute2 faketime chrony
modprobe sch_netem || echo "provision: sch_netem module not available; netem faults will fail" >&2
install -d -m 0755 "/var/lib/lockbench/${node}"
