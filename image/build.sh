#!/usr/bin/env bash
# image/build.sh [amd64|arm64|all]: the appliance's disk images, image/out/backupd-<arch>.img
# (raw; write them to an SD card or disk with dd or a flasher). `npm run image` runs it for both.
#
# Debian 13 from deb.debian.org, made with mmdebstrap (no loop devices, no mounts), then
# appliance/provision.sh run inside it, then assembled into a partitioned image by
# image/lib/<arch>.sh. Downloads are cached in image/.cache/; an image is reused when its inputs
# (the app's .deb, appliance/, image/ and the package lists) did not change.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO_ROOT/image/lib/common.sh"

target=${1:-all}
case $target in
  amd64 | arm64) arches=("$target") ;;
  all) arches=(amd64 arm64) ;;
  *) die "unknown target '$target': use amd64, arm64 or all" ;;
esac

[[ $(id -u) -eq 0 ]] || die "mmdebstrap makes the image's files owned by root: run as root (sudo npm run image)"
require_node
# One command on a fresh machine: the Debian tools, then the npm packages the .deb is made from.
# The boot test calls this with everything installed and built (BACKUPD_DEB_SKIP_BUILD=1).
if [[ -z ${BACKUPD_DEB_SKIP_BUILD:-} ]]; then
  install_system_packages
  install_image_tools
  install_npm_packages
fi
common_check_tools

for arch in "${arches[@]}"; do
  start=$SECONDS
  common_build_image "$arch"
  say "backupd-$arch.img ready in $((SECONDS - start)) s"
done
