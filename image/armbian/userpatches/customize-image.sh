#!/bin/bash
# Armbian build framework hook (userpatches/customize-image.sh, run inside the image's chroot as
# root with: RELEASE LINUXFAMILY BOARD BUILD_DESKTOP). userpatches/overlay/ is visible here as
# /tmp/overlay; image/armbian/prepare.sh puts the arm64 .deb and appliance/ in overlay/backupd/.
set -euo pipefail
RELEASE=$1
[[ $RELEASE == trixie ]] || echo "customize-image: backupd is made for Debian 13 (trixie); building on $RELEASE" >&2
src=/tmp/overlay/backupd
deb=$(find "$src" -maxdepth 1 -name 'backupd_*_arm64.deb' | sort | tail -1)
[[ -n $deb ]] || { echo "customize-image: no backupd .deb in $src: run image/armbian/prepare.sh" >&2; exit 1; }
bash "$src/appliance/provision.sh" "$deb"
# No password exists before the owner sets one in the panel: no Armbian first-login prompt that
# asks for a root password on the console.
rm -f /root/.not_logged_in_yet
