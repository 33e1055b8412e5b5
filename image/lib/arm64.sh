# shellcheck shell=bash
# The Raspberry Pi (arm64) half of image/build.sh: Debian 13 for the Pi 4 and Pi 3, laid out as
# Debian's own Pi images are (MBR; FAT32 firmware partition labelled RASPIFIRM at /boot/firmware,
# filled by raspi-firmware's kernel hooks; ext4 root labelled RASPIROOT).
#
# Sourced by image/build.sh, which calls:
#   arm64_packages                      -> comma-separated packages to add to --include
#   arm64_mmdebstrap_args               -> extra mmdebstrap arguments, ONE PER LINE
#                                          (read them with mapfile -t; put them AFTER the
#                                          provisioning hooks: the last hook builds the initramfs)
#   arm64_assemble <rootfs-dir> <img>   -> the raw SD-card image, without loop devices or mounts
# The same file is also run as a script by the mmdebstrap hooks it prints ("hook-essential",
# "hook-customize"), so the hooks live here in plain bash instead of one-line strings.
#
# Why the hooks: under qemu-user, mkinitramfs is the slow part of an arm64 build (35 minutes
# measured for a whole build, with it run twice: once for linux-image, once for the trigger of
# everything installed after). We divert update-initramfs while packages are installed and run
# it once at the end, with an explicit module list (MODULES=list) instead of "most".

ARM64_LIB_FILE=$(readlink -f "${BASH_SOURCE[0]}")
# The labels provision.sh's fstab uses (image/lib/common.sh exports them); these defaults are the same.
ARM64_FIRM_LABEL=${BACKUPD_FW_LABEL:-BACKUPDFW}
ARM64_ROOT_LABEL=${BACKUPD_ROOT_LABEL:-backupd-root}
# Debian's Pi images use about 500 MiB; kernel + initrd + dtbs + GPU firmware take about 90 MiB,
# and a kernel upgrade keeps one older copy while it runs, so 256 MiB leaves room.
ARM64_FIRM_MIB=${ARM64_FIRM_MIB:-256}
# Free space left in the root filesystem above what the rootfs holds (first boot grows it to the card).
ARM64_ROOT_SLACK_MIB=${ARM64_ROOT_SLACK_MIB:-384}

# What the initramfs must hold to find the root filesystem on a Pi 3/4 (SD card through
# sdhci-iproc or the sdhost "bcm2835" controller; USB boot through the VL805 xHCI behind the
# PCIe bridge of the Pi 4, or dwc2 on the Pi 3) and under qemu-system-aarch64 -M virt (virtio).
# Modules that are built into the kernel or absent from it are dropped when the list is written.
ARM64_INITRAMFS_MODULES=(
  ext4 vfat nls_cp437 nls_ascii nls_utf8
  mmc_block sdhci sdhci_pltfm sdhci_iproc bcm2835 bcm2835_dma
  reset_raspberrypi pcie_brcmstb xhci_pci xhci_plat_hcd dwc2 usb_storage uas sd_mod
  raspberrypi_cpufreq clk_raspberrypi gpio_raspberrypi_exp
  virtio_pci virtio_mmio virtio_blk virtio_scsi
)

arm64_packages() {
  # raspi-firmware (non-free-firmware): the GPU boot firmware and the hooks that copy the kernel,
  # initrd and device trees to /boot/firmware and write config.txt/cmdline.txt.
  # firmware-brcm80211 + wireless-regdb: the Pi's Wi-Fi. zstd: the initramfs compressor.
  # dosfstools: fsck of the FAT partition at boot.
  echo "raspi-firmware,firmware-brcm80211,wireless-regdb,linux-image-arm64,initramfs-tools,zstd,dosfstools"
}

arm64_mmdebstrap_args() {
  printf '%s\n' \
    "--architectures=arm64" \
    "--components=main,non-free-firmware" \
    "--essential-hook=bash '$ARM64_LIB_FILE' hook-essential \"\$1\"" \
    "--customize-hook=bash '$ARM64_LIB_FILE' hook-customize \"\$1\""
}

# Before any package is installed: update-initramfs becomes a no-op, so linux-image's postinst
# and the initramfs-tools trigger do not run mkinitramfs under emulation.
_arm64_hook_essential() {
  local root=$1
  chroot "$root" dpkg-divert --quiet --local --rename \
    --divert /usr/sbin/update-initramfs.backupd-deferred --add /usr/sbin/update-initramfs
  cat >"$root/usr/sbin/update-initramfs" <<'EOF'
#!/bin/sh
# Placed by image/lib/arm64.sh while the image is built: the initramfs is made once at the end.
echo "update-initramfs: deferred until the image is assembled" >&2
exit 0
EOF
  chmod 0755 "$root/usr/sbin/update-initramfs"
}

# fstab for this layout, for the lines that are missing (provision.sh writes its own, with the
# same labels, and they are kept). Written before the initramfs is built, which reads it.
_arm64_write_fstab() {
  local root=$1
  touch "$root/etc/fstab"
  if ! grep -qE '^[^#[:space:]]+[[:space:]]+/[[:space:]]' "$root/etc/fstab"; then
    echo "LABEL=$ARM64_ROOT_LABEL / ext4 rw,noatime,errors=remount-ro 0 1" >>"$root/etc/fstab"
  fi
  if ! grep -qE '^[^#[:space:]]+[[:space:]]+/boot/firmware[[:space:]]' "$root/etc/fstab"; then
    echo "LABEL=$ARM64_FIRM_LABEL /boot/firmware vfat rw,noatime,umask=0077,nofail 0 2" >>"$root/etc/fstab"
  fi
}

# After every package (and the provisioning) is installed: configure the initramfs and the
# firmware partition's files, restore update-initramfs and run it once.
_arm64_hook_customize() {
  local root=$1 kver m mods=()
  kver=$(basename "$(ls -d "$root"/lib/modules/*/ | sort -V | tail -n1)")
  [[ -n $kver ]] || { echo "arm64: no kernel in $root/lib/modules" >&2; return 1; }
  for m in "${ARM64_INITRAMFS_MODULES[@]}"; do
    # Only real loadable modules: builtin ones need nothing, missing ones would only warn.
    if grep -qE "/${m//_/[_-]}\.ko(\.[a-z]+)?:" "$root/lib/modules/$kver/modules.dep"; then mods+=("$m"); fi
  done
  mkdir -p "$root/etc/initramfs-tools/conf.d"
  cat >"$root/etc/initramfs-tools/conf.d/backupd-arm64.conf" <<'EOF'
# image/lib/arm64.sh: only the modules listed in /etc/initramfs-tools/modules (root on SD card,
# USB or virtio) instead of "most": the initramfs is smaller, faster to build and to load.
MODULES=list
COMPRESS=zstd
# The root is ext4: said here because the fsck hook cannot probe the root device in a chroot,
# and without it the initramfs has no e2fsck (fsck.repair=yes on cmdline.txt needs one).
FSTYPE=ext4
EOF
  {
    echo "# image/lib/arm64.sh: what finds the root filesystem on a Pi 3/4 and under QEMU virt"
    printf '%s\n' "${mods[@]}"
  } >"$root/etc/initramfs-tools/modules"
  # raspi-firmware writes cmdline.txt from this: the root by label, as in Debian's Pi images.
  cat >"$root/etc/default/raspi-firmware" <<EOF
# image/lib/arm64.sh
ROOTPART=LABEL=$ARM64_ROOT_LABEL
# The last console gets the boot messages and the setup code: the screen, then the Pi 3/4 UART.
CONSOLES="ttyS1,115200 tty0"
# No cma= on the command line: a headless appliance needs no contiguous pool for video, and the
# default 64M makes a Pi 4 unbootable (the hook cannot tell it builds for a Pi 4 in a chroot).
CMA=0
EOF
  _arm64_write_fstab "$root"
  rm -f "$root/usr/sbin/update-initramfs"
  chroot "$root" dpkg-divert --quiet --local --rename \
    --divert /usr/sbin/update-initramfs.backupd-deferred --remove /usr/sbin/update-initramfs
  local t0=$SECONDS
  chroot "$root" update-initramfs -c -k "$kver"
  echo "arm64: initramfs for $kver built in $((SECONDS - t0)) s" >&2
  # raspi-firmware's hooks copy the kernel, initrd and dtbs to /boot/firmware; check they did.
  local f
  for f in "vmlinuz-$kver" "initrd.img-$kver" config.txt cmdline.txt bcm2711-rpi-4-b.dtb bcm2837-rpi-3-b.dtb start4.elf; do
    [[ -s $root/boot/firmware/$f ]] || { echo "arm64: /boot/firmware/$f is missing after update-initramfs" >&2; return 1; }
  done
}

# arm64_assemble ROOTFS_DIR OUT_IMG: MBR image = 4 MiB gap, FAT32 firmware partition, ext4 root.
arm64_assemble() {
  local rootfs=$1 out=$2
  if ! compgen -G "$rootfs/boot/firmware/vmlinuz-*" >/dev/null || [[ ! -s $rootfs/boot/firmware/config.txt ]]; then
    echo "arm64_assemble: $rootfs/boot/firmware has no kernel or config.txt: was the rootfs built with arm64_mmdebstrap_args?" >&2
    return 1
  fi
  local work
  work=$(mktemp -d "$(dirname "$out")/.arm64-assemble.XXXXXX")

  _arm64_write_fstab "$rootfs"

  # FAT32 firmware partition from /boot/firmware (mtools: no mount).
  local fat=$work/firm.vfat
  mkfs.vfat -C -F 32 -n "$ARM64_FIRM_LABEL" "$fat" $((ARM64_FIRM_MIB * 1024)) >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -i "$fat" -s -p -Q "$rootfs"/boot/firmware/* ::/

  # ext4 root from the tree with /boot/firmware left empty (it is the FAT's mount point): the
  # firmware files are moved aside for mkfs and put back afterwards, whatever happens.
  mv "$rootfs/boot/firmware" "$work/firmware"
  mkdir "$rootfs/boot/firmware"
  local used_kib root_mib rc=0
  used_kib=$(du -s -k --apparent-size "$rootfs" | cut -f1)
  root_mib=$((used_kib * 12 / 10 / 1024 + ARM64_ROOT_SLACK_MIB))
  mkfs.ext4 -q -F -L "$ARM64_ROOT_LABEL" -d "$rootfs" "$work/root.ext4" "${root_mib}M" || rc=$?
  rmdir "$rootfs/boot/firmware"
  mv "$work/firmware" "$rootfs/boot/firmware"
  ((rc == 0)) || { rm -rf "$work"; echo "arm64_assemble: mkfs.ext4 failed" >&2; return 1; }

  # MBR (the Pi 3 boot ROM reads only MBR): FAT32 LBA (0x0c), bootable, then Linux.
  local start=8192 fat_sec=$((ARM64_FIRM_MIB * 2048)) root_sec=$((root_mib * 2048))
  local root_start=$((start + fat_sec))
  rm -f "$out"
  truncate -s $(((root_start + root_sec) * 512)) "$out"
  sfdisk --quiet "$out" <<EOF
label: dos
unit: sectors
start=$start, size=$fat_sec, type=c, bootable
start=$root_start, size=$root_sec, type=83
EOF
  dd if="$fat" of="$out" bs=1M seek=$((start / 2048)) conv=notrunc,sparse status=none
  dd if="$work/root.ext4" of="$out" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
  rm -rf "$work"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case ${1:-} in
    hook-essential) _arm64_hook_essential "$2" ;;
    hook-customize) _arm64_hook_customize "$2" ;;
    *)
      echo "usage: $0 hook-essential|hook-customize ROOTFS (the mmdebstrap hooks; source this file for the rest)" >&2
      exit 2
      ;;
  esac
fi
