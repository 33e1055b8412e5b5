#!/bin/bash
# appliance/provision.sh <backupd_VERSION_ARCH.deb>
#
# Turns a Debian 13 system into the backup appliance. Run as root INSIDE the target root (a
# chroot, or the machine itself); the three image builders call it and only it: image/build.sh
# (mmdebstrap), image/pi-gen/ and image/armbian/. It installs the app and what it needs, writes
# /etc/backupd, and configures the network, avahi, nftables, journald, SSH (off) and the first
# boot. The image must ship without machine-id, SSH host keys or setup code: the first boot makes
# them on each appliance.
#
# Environment:
#   BACKUPD_FSTAB=write      write /etc/fstab (root by label, FAT partition at /boot/firmware);
#                            otherwise the builder's fstab is kept and only gets noatime
#   BACKUPD_ROOT_LABEL       ext4 root label for that fstab (default backupd-root)
#   BACKUPD_FW_LABEL         FAT partition label for that fstab (default BACKUPDFW)
#   BACKUPD_ESP_KERNEL=1     copy each new kernel and initrd to /boot/firmware (amd64, where the
#                            FAT partition is the EFI system partition that systemd-boot reads)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deb=${1:-}
die() {
  echo "provision: $*" >&2
  exit 1
}
say() { echo "provision: $*"; }

[[ $(id -u) -eq 0 ]] || die "run as root inside the target system"
[[ -n $deb && -f $deb ]] || die "usage: provision.sh /path/to/backupd_VERSION_ARCH.deb (built by scripts/build-deb.sh)"
grep -q '^VERSION_CODENAME=trixie' /etc/os-release 2>/dev/null ||
  say "warning: this is not Debian 13 (trixie); the appliance is made and tested on trixie"

# What the appliance runs besides the app (the app's own dependencies come with the .deb). The
# mmdebstrap builder installs these already (image/lib/common.sh reads this list).
PACKAGES=$(grep -v '^#' "$here/packages.txt" | tr '\n' ' ')

export DEBIAN_FRONTEND=noninteractive
say "installing packages and the app"
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -q --no-install-recommends $PACKAGES "$(readlink -f "$deb")"

say "configuring"
# Configuration files, scripts and units, owned by root.
cp -r --no-preserve=ownership "$here/rootfs/." /
chmod 0755 /usr/lib/backupd-appliance/*.sh

echo backup >/etc/hostname
if grep -q '^127\.0\.1\.1' /etc/hosts 2>/dev/null; then
  sed -i 's/^127\.0\.1\.1.*/127.0.1.1\tbackup/' /etc/hosts
else
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tbackup\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
fi

# The daemon's configuration, with its appliance: section (standby without the data disk, the
# access db on the SD card, the setup code made at first boot). /srv/backup is only the data
# disk's mount point: root's and empty, so nothing is ever written to the SD card under it.
install -d -m 0770 -o root -g backupd /etc/backupd
install -m 0660 -o root -g backupd "$here/etc/config.yaml" /etc/backupd/config.yaml
runuser -u backupd -- backupd config check --config /etc/backupd/config.yaml >/dev/null ||
  die "the installed backupd rejects appliance/etc/config.yaml (see above)"
install -d -m 0755 -o root -g root /srv/backup
install -d -m 0750 -o backupd -g backupd /var/lib/backupd

# No identity in the image: systemd makes the machine-id at first boot (an empty file means
# "first boot"), and SSH host keys are made by the first boot only when SSH is enabled.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -sf /etc/machine-id /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
rm -f /var/lib/backupd-appliance/firstboot.done

# noatime on the root filesystem: reading a file must not write the SD card.
if [[ ${BACKUPD_FSTAB:-} == write ]]; then
  cat >/etc/fstab <<EOF
# <file system>                      <mount point>   <type> <options>                          <dump> <pass>
LABEL=${BACKUPD_ROOT_LABEL:-backupd-root}   /               ext4   noatime,errors=remount-ro          0      1
LABEL=${BACKUPD_FW_LABEL:-BACKUPDFW}        /boot/firmware  vfat   umask=0077,noatime,nofail          0      2
EOF
elif [[ -f /etc/fstab ]]; then
  # The builder's own fstab (pi-gen, Armbian): add noatime to the root line.
  awk '$2 == "/" && $4 !~ /noatime/ { $4 = $4 ",noatime" } { print }' /etc/fstab >/etc/fstab.new &&
    mv /etc/fstab.new /etc/fstab
fi
install -d -m 0755 /boot/firmware

if [[ ${BACKUPD_ESP_KERNEL:-} == 1 ]]; then
  install -D -m 0755 "$here/esp-kernel-hook" /etc/kernel/postinst.d/zz-backupd-esp
  install -D -m 0755 "$here/esp-kernel-hook" /etc/initramfs/post-update.d/zz-backupd-esp
fi

# Services: the network (networkd, resolved), avahi, the firewall, the daemon, the first boot
# and the banner on; SSH off until a key is pre-seeded.
systemctl enable systemd-networkd.service systemd-resolved.service nftables.service \
  avahi-daemon.service backupd.service backupd-firstboot.service backupd-banner.service \
  unattended-upgrades.service apt-daily.timer apt-daily-upgrade.timer
systemctl enable backupd-disk-scan.service backupd-disk-adopt.path
systemctl disable ssh.service ssh.socket 2>/dev/null || true
systemctl mask systemd-networkd-wait-online.service
# A root without password cannot log in on the console; the owner never needs to.
passwd -l root >/dev/null

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /tmp/* 2>/dev/null || true
say "done"
