#!/usr/bin/env bash
# The vagrant runtime's extra set-up (after scripts/setup.sh): Vagrant with vagrant-libvirt, qemu,
# libvirt (daemon and client, never started as a system service: the bench runs its own libvirtd
# inside a network namespace, docs/runtimes.md "vagrant"), dnsmasq for the VMs' DHCP, and
# mmdebstrap; then the Debian 12 box (scripts/build-vm-box.sh, cached). Needs root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup-vm: %s\n' "$*"; }
PACKAGES=(vagrant vagrant-libvirt qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu
          libvirt-clients dnsmasq-base mmdebstrap e2fsprogs)

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "needs root on Debian/Ubuntu"; exit 2
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || say "apt-get update failed; trying with the current package lists"
  # No package script may start a service (a system libvirtd would make networks in the root
  # namespace): the bench starts its own libvirtd where it belongs.
  guard_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard_created=1
  fi
  # --no-install-recommends: no libvirt-daemon-config-network (its "default" network is virbr0
  # on 192.168.122.0/24 in the root namespace).
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/lockbench-apt-vm.log 2>&1 \
    || { say "install failed (see /tmp/lockbench-apt-vm.log)"; [ "$guard_created" = 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$guard_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
else
  say "packages already installed"
fi
# libvirt's qemu driver insists its configured users exist (the libvirt-daemon-system package,
# not installed here, would create them); our libvirtd runs qemu as root anyway.
for user in libvirt-qemu libvirt-dnsmasq; do
  getent passwd "$user" >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --user-group "$user"
done
bash scripts/build-vm-box.sh
say "done: lockbench cluster up --runtime vagrant (docs/runtimes.md)"
