#!/usr/bin/env bash
# Runs inside the box's root filesystem while scripts/build-vm-box.sh builds it (chroot).
set -euo pipefail
echo lockbench-vm > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 lockbench-vm\n' > /etc/hosts
echo '/dev/vda / ext4 defaults,noatime 0 1' > /etc/fstab
# Each VM makes its own machine id (and so its own DHCP client id) on first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
useradd --create-home --shell /bin/bash --uid 1000 vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
# DHCP on the one NIC (the bench's management network inside its namespace).
mkdir -p /etc/systemd/network
printf '[Match]\nName=eth* en*\n\n[Network]\nDHCP=ipv4\n' > /etc/systemd/network/50-dhcp.network
systemctl enable systemd-networkd.service
# Host keys: made per VM on first boot, never shared through the box.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
# (the packaged unit's own ExecStartPre, `sshd -t`, fails without keys: list both, keygen first)
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > /etc/systemd/system/ssh.service.d/hostkeys.conf
printf 'UseDNS no\nPasswordAuthentication no\nMaxSessions 64\nMaxStartups 64:30:128\n' \
  > /etc/ssh/sshd_config.d/lockbench.conf
# Nothing runs that the bench did not start: etcd is started by the etcd backend; periodic jobs
# would only steal the emulated CPU.
systemctl disable etcd.service || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
  fstrim.timer logrotate.timer 2>/dev/null || true
echo 'sch_netem' > /etc/modules-load.d/lockbench.conf
install -d -m 0755 /var/lib/lockbench
apt-get clean
rm -rf /var/lib/apt/lists/*
