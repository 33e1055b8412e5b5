#!/bin/bash -e
# pi-gen step: the backupd appliance, installed by its one provisioning script. files/ is filled
# by image/pi-gen/prepare.sh (the .deb for arm64 and appliance/).
deb=$(find files -maxdepth 1 -name 'backupd_*_arm64.deb' | sort | tail -1)
[ -n "$deb" ] || { echo "no backupd .deb in $(pwd)/files: run image/pi-gen/prepare.sh first" >&2; exit 1; }
rm -rf "${ROOTFS_DIR}/tmp/backupd"
install -d "${ROOTFS_DIR}/tmp/backupd"
cp -r files/appliance "$deb" "${ROOTFS_DIR}/tmp/backupd/"
on_chroot <<CHROOT
bash /tmp/backupd/appliance/provision.sh /tmp/backupd/$(basename "$deb")
rm -rf /tmp/backupd
CHROOT
