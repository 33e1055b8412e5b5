#!/usr/bin/env bash
# image/pi-gen/prepare.sh [PI_GEN_DIR]: builds the arm64 .deb and puts it, with appliance/, in
# the stage's files/ folder; with PI_GEN_DIR, also copies the stage into that pi-gen checkout.
# Then build with pi-gen as docs/appliance.md says (STAGE_LIST="stage0 stage1 stage2 stage-backupd").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
stage=$REPO_ROOT/image/pi-gen/stage-backupd
bash "$REPO_ROOT/scripts/build-deb.sh" arm64
files=$stage/00-backupd/files
rm -rf "$files" && mkdir -p "$files"
cp -r "$REPO_ROOT/appliance" "$files/"
cp "$(ls "$REPO_ROOT"/dist/backupd_*_arm64.deb | sort -V | tail -1)" "$files/"
if [[ -n ${1:-} ]]; then
  [[ -f $1/build.sh ]] || die "$1 is not a pi-gen checkout (no build.sh)"
  rm -rf "$1/stage-backupd" && cp -r "$stage" "$1/"
  say "stage copied to $1/stage-backupd"
fi
say "ready: $stage"
