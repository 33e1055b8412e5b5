#!/usr/bin/env bash
# image/armbian/prepare.sh ARMBIAN_BUILD_DIR: builds the arm64 .deb and installs the hook and its
# files into an Armbian build checkout (userpatches/customize-image.sh and
# userpatches/overlay/backupd/). Then ./compile.sh as docs/appliance.md says.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
dest=${1:?usage: image/armbian/prepare.sh /path/to/armbian/build}
[[ -f $dest/compile.sh ]] || die "$dest is not an Armbian build checkout (no compile.sh)"
bash "$REPO_ROOT/scripts/build-deb.sh" arm64
mkdir -p "$dest/userpatches/overlay"
install -m 0755 "$REPO_ROOT/image/armbian/userpatches/customize-image.sh" "$dest/userpatches/customize-image.sh"
rm -rf "$dest/userpatches/overlay/backupd" && mkdir -p "$dest/userpatches/overlay/backupd"
cp -r "$REPO_ROOT/appliance" "$dest/userpatches/overlay/backupd/"
cp "$(ls "$REPO_ROOT"/dist/backupd_*_arm64.deb | sort -V | tail -1)" "$dest/userpatches/overlay/backupd/"
say "ready: $dest/userpatches"
