# shellcheck shell=bash
# Shared by the image builders (sourced by image/build.sh after scripts/lib.sh). An architecture's
# file image/lib/<arch>.sh defines:
#   <arch>_packages                 comma-separated packages beyond appliance/packages.txt
#   <arch>_mmdebstrap_args          extra mmdebstrap arguments, one a line (hooks, ...)
#   <arch>_assemble ROOTFS OUT.img  the bootable image from the provisioned root directory

IMAGE_DIR=$REPO_ROOT/image
IMAGE_OUT=${IMAGE_OUT:-$IMAGE_DIR/out}
IMAGE_CACHE=${IMAGE_CACHE:-$IMAGE_DIR/.cache}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
DEBIAN_SUITE=trixie
# Labels shared by provision.sh's fstab and the assembled image.
export BACKUPD_ROOT_LABEL=backupd-root BACKUPD_FW_LABEL=BACKUPDFW

common_check_tools() {
  local t missing=()
  for t in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk dpkg-deb; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing tools (${missing[*]}): sudo npm run image installs them, or apt-get install mmdebstrap e2fsprogs dosfstools mtools fdisk dpkg-dev"
}

# A foreign architecture's packages run their maintainer scripts under qemu-user, through the
# kernel's binfmt_misc: mount it and register the interpreter when the machine has not (a fresh
# machine, a container, or a host without the binfmt-support service running).
common_enable_foreign_arch() {
  local arch=$1 name
  [[ $arch == "$(dpkg --print-architecture)" ]] && return 0
  case $arch in
    arm64) name=qemu-aarch64 ;;
    *) die "no qemu-user interpreter known for $arch" ;;
  esac
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
      die "cannot mount binfmt_misc, which running $arch programs under qemu-user needs (in a container, mount it on the host: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/$name ]]; then
    update-binfmts --enable "$name" ||
      die "cannot register $name with binfmt_misc: is qemu-user-static installed (sudo npm run image installs it)?"
  fi
  arch-test "$arch" >/dev/null ||
    die "$arch programs still do not run here under qemu-user (arch-test $arch): see update-binfmts --display $name"
}

# The hash of everything an image is made from: when it matches the one stored beside an image,
# that image is reused.
common_inputs_hash() {
  local arch=$1 deb=$2
  {
    sha256sum "$deb" | cut -d' ' -f1
    (cd "$REPO_ROOT" && find appliance image/build.sh image/lib -type f -print0 | sort -z | xargs -0 sha256sum)
    "${arch}_packages"
    "${arch}_mmdebstrap_args"
    echo "$DEBIAN_MIRROR $DEBIAN_SECURITY $DEBIAN_SUITE"
  } | sha256sum | cut -d' ' -f1
}

common_build_image() {
  local arch=$1 lib=$IMAGE_DIR/lib/$1.sh
  [[ -f $lib ]] || die "image/lib/$arch.sh is missing: it assembles the $arch image"
  # shellcheck source=/dev/null
  source "$lib"

  local version deb
  version=$(node -p 'require(process.argv[1]).version' "$REPO_ROOT/app/package.json")
  deb=$REPO_ROOT/dist/backupd_${version}_${arch}.deb
  if [[ -z ${BACKUPD_DEB_REUSE:-} || ! -f $deb ]]; then
    bash "$REPO_ROOT/scripts/build-deb.sh" "$arch"
  fi

  local out=$IMAGE_OUT/backupd-$arch.img hash
  hash=$(common_inputs_hash "$arch" "$deb")
  if [[ -f $out && -f $out.inputs && $(cat "$out.inputs") == "$hash" && -z ${IMAGE_REBUILD:-} ]]; then
    say "image/out/backupd-$arch.img is current (inputs $hash): reused"
    return 0
  fi

  common_enable_foreign_arch "$arch"
  # Outside the checkout (the root has /proc mounted while mmdebstrap runs, which tools that walk
  # the repository must not meet), and a fresh folder per build: other checkouts build at the
  # same time, and a shared path would let one build delete another's root under its mounts.
  local work
  mkdir -p "${IMAGE_WORK:-/var/tmp}" "$IMAGE_OUT" "$IMAGE_CACHE/apt-$arch"
  work=$(mktemp -d "${IMAGE_WORK:-/var/tmp}/backupd-image-$arch.XXXXXX")
  say "Debian $DEBIAN_SUITE root for $arch (mmdebstrap)"
  local packages extra=()
  packages=$(grep -v '^#' "$REPO_ROOT/appliance/packages.txt" | paste -sd,)
  [[ -n $("${arch}_packages") ]] && packages+=",$("${arch}_packages")"
  mapfile -t extra < <("${arch}_mmdebstrap_args")
  local t0=$SECONDS
  mmdebstrap --mode=root --variant=minbase --architectures="$arch" \
    --aptopt='APT::Install-Recommends "false"' \
    --include="$packages" \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in '$IMAGE_CACHE/apt-$arch' /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives '$IMAGE_CACHE/apt-$arch'" \
    --customize-hook="copy-in '$deb' '$REPO_ROOT/appliance' /tmp" \
    --customize-hook="chroot \"\$1\" env BACKUPD_FSTAB=write BACKUPD_ROOT_LABEL=$BACKUPD_ROOT_LABEL BACKUPD_FW_LABEL=$BACKUPD_FW_LABEL BACKUPD_ESP_KERNEL=${BACKUPD_ESP_KERNEL:-} bash /tmp/appliance/provision.sh /tmp/$(basename "$deb")" \
    --customize-hook='rm -rf "$1"/tmp/appliance "$1"/tmp/*.deb' \
    "${extra[@]}" \
    "$DEBIAN_SUITE" "$work/rootfs" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main non-free-firmware" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main non-free-firmware" \
    "deb $DEBIAN_SECURITY $DEBIAN_SUITE-security main non-free-firmware"
  say "root filesystem made in $((SECONDS - t0)) s"

  t0=$SECONDS
  "${arch}_assemble" "$work/rootfs" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$hash" >"$out.inputs"
  # Only our own folder, and only once nothing is mounted under it any more.
  if [[ -z $(findmnt -rno TARGET | grep -F "$work/" || true) ]]; then
    rm -rf "$work"
  else
    say "warning: something is still mounted under $work: left in place"
  fi
  say "assembled in $((SECONDS - t0)) s: $out ($(du -h --apparent-size "$out" | cut -f1))"
}

# common_fat_image FILE SIZE_MIB LABEL: an empty FAT32 filesystem in a file (no mount).
common_fat_image() {
  rm -f "$1"
  mkfs.vfat -C -F 32 -n "$3" "$1" $(($2 * 1024)) >/dev/null
}

# common_ext4_image ROOTFS FILE: the root filesystem, sized to its content plus room to boot
# (the first boot grows it to the card), made from the directory (mkfs.ext4 -d, no mount).
common_ext4_image() {
  local rootfs=$1 file=$2 used_mb
  used_mb=$(du -sm --apparent-size "$rootfs" | cut -f1)
  ROOT_MB=$((used_mb * 13 / 10 + 300))
  rm -f "$file"
  mkfs.ext4 -q -L "$BACKUPD_ROOT_LABEL" -m 1 -d "$rootfs" "$file" "${ROOT_MB}M"
}
