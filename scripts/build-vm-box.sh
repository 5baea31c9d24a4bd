#!/usr/bin/env bash
# Build the Debian 12 box of the vagrant runtime from this machine's own Debian packages (no
# Vagrant Cloud): mmdebstrap -> ext4 image -> qcow2 -> a vagrant-libvirt box, added to Vagrant as
# lockbench/debian12. Cached: a second run with the box present only says so (--force rebuilds).
#
# The box holds everything a node needs, because the VMs have no way out of the bench's network
# namespace (docs/runtimes.md, "vagrant"): sshd, sudo, python3 (venv, yaml, uvloop) for the
# deployed lockd, iptables and iproute2 for partitions and netem, chrony (the time sync the clock
# nemesis stops), etcd-server (disabled; the etcd backend starts its own). The VMs boot the box's
# kernel directly (libvirt direct kernel boot: no bootloader in the image). User `vagrant` has
# passwordless sudo and logs in with a key generated here (never the well-known insecure key).
set -euo pipefail
CACHE="${LOCKBENCH_VM_CACHE:-$HOME/.cache/lockbench/vm}"
BOX_NAME=lockbench/debian12
BOX_FILE="$CACHE/lockbench-debian12.box"
DISK_SIZE=3G
PACKAGES=linux-image-cloud-amd64,systemd-sysv,udev,dbus,openssh-server,sudo,kmod,\
python3,python3-venv,python3-pip,python3-yaml,python3-uvloop,iptables,iproute2,chrony,\
etcd-server,procps,util-linux
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
say() { printf 'build-vm-box: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then say "needs root (mmdebstrap, mke2fs of a root filesystem)"; exit 2; fi
for tool in mmdebstrap mke2fs qemu-img vagrant ssh-keygen tar; do
  command -v "$tool" >/dev/null || { say "missing $tool: run bash scripts/setup-vm.sh"; exit 2; }
done
force=0
[ "${1:-}" = "--force" ] && force=1
if [ "$force" = 0 ] && [ -f "$BOX_FILE" ] && vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
  say "box $BOX_NAME already built ($BOX_FILE); --force rebuilds"
  exit 0
fi
# The Debian package source: the host's own apt sources (LOCKBENCH_VM_SOURCES overrides).
SOURCES="${LOCKBENCH_VM_SOURCES:-}"
if [ -z "$SOURCES" ]; then
  for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$candidate" ] && grep -qv '^\s*#' "$candidate"; then SOURCES=$candidate; break; fi
  done
fi
[ -n "$SOURCES" ] || { say "no apt sources found: set LOCKBENCH_VM_SOURCES to a sources file"; exit 2; }

mkdir -p "$CACHE"
chmod 0700 "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
# A mount mmdebstrap could not undo (a busy /proc) must never be recursed into or copied.
unmount_leftovers() {
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r); do umount -l "$m" || true; done
}
trap 'unmount_leftovers; rm -rf --one-file-system "$work"' EXIT
KEY="$CACHE/vagrant_ed25519"
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C lockbench-vm -f "$KEY"
start=$(date +%s)

say "mmdebstrap bookworm from $SOURCES"
mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
  --customize-hook='cp '"$SCRIPT_DIR"'/vm-box-customize.sh "$1/tmp/customize.sh"' \
  --customize-hook='chroot "$1" bash /tmp/customize.sh && rm "$1/tmp/customize.sh"' \
  --customize-hook='install -d -m 0700 -o 1000 -g 1000 "$1/home/vagrant/.ssh"' \
  --customize-hook='install -m 0600 -o 1000 -g 1000 '"$KEY.pub"' "$1/home/vagrant/.ssh/authorized_keys"' \
  bookworm "$work/root" "$SOURCES"

unmount_leftovers
mkdir "$work/box"
cp "$work"/root/boot/vmlinuz-* "$work/box/vmlinuz"
cp "$work"/root/boot/initrd.img-* "$work/box/initrd.img"
say "ext4 image ($DISK_SIZE, sparse) and qcow2"
mke2fs -q -t ext4 -L root -d "$work/root" "$work/root.raw" "$DISK_SIZE"
rm -rf "$work/root"
qemu-img convert -c -O qcow2 "$work/root.raw" "$work/box/box.img"
rm "$work/root.raw"
cp "$KEY" "$work/box/vagrant_ed25519"
size_gb=$(( $(qemu-img info --output=json "$work/box/box.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])') / 1073741824 ))
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" > "$work/box/metadata.json"
cat > "$work/box/Vagrantfile" <<'EOF'
# The lockbench Debian 12 box: direct kernel boot of the box's own kernel, the box's own key.
box_dir = File.dirname(__FILE__)
Vagrant.configure("2") do |config|
  config.ssh.username = "vagrant"
  config.ssh.private_key_path = File.join(box_dir, "vagrant_ed25519")
  config.ssh.insert_key = false
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.join(box_dir, "vmlinuz")
    lv.initrd = File.join(box_dir, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
EOF
tar -C "$work/box" -czf "$work/box.tar.gz" metadata.json Vagrantfile box.img vmlinuz initrd.img vagrant_ed25519
mv "$work/box.tar.gz" "$BOX_FILE"
vagrant box add --force --name "$BOX_NAME" "$BOX_FILE" >/dev/null
say "built $BOX_NAME in $(( $(date +%s) - start )) s: $BOX_FILE ($(du -h "$BOX_FILE" | cut -f1))"
