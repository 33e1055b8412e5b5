# shellcheck shell=bash
# amd64: a GPT disk for UEFI mini-PCs and NAS VMs. systemd-boot (as the removable-media loader
# EFI/BOOT/BOOTX64.EFI, so no firmware boot entry is needed) starts the kernel and initrd kept on
# the EFI system partition, which the running system mounts at /boot/firmware like the Pi's FAT
# partition. A kernel hook keeps the copies there current (appliance/esp-kernel-hook).

export BACKUPD_ESP_KERNEL=1
AMD64_ESP_MB=256

amd64_packages() { echo "linux-image-amd64,initramfs-tools,systemd-boot-efi"; }

amd64_mmdebstrap_args() { :; }

amd64_assemble() {
  local rootfs=$1 out=$2 tmp kernel version
  tmp=$(dirname "$out")/.assemble-amd64
  rm -rf "$tmp" && mkdir -p "$tmp"
  kernel=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
  [[ -n $kernel ]] || die "no kernel in the root filesystem (linux-image-amd64 missing?)"
  version=${kernel##*/vmlinuz-}
  [[ -f $rootfs/boot/initrd.img-$version ]] || die "no initrd for $version"

  common_fat_image "$tmp/esp.img" "$AMD64_ESP_MB" "$BACKUPD_FW_LABEL"
  export MTOOLS_SKIP_CHECK=1
  mmd -i "$tmp/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
  mcopy -i "$tmp/esp.img" "$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$tmp/esp.img" "$kernel" ::/vmlinuz
  mcopy -i "$tmp/esp.img" "$rootfs/boot/initrd.img-$version" ::/initrd.img
  printf 'default backupd.conf\ntimeout 0\neditor no\nconsole-mode keep\n' >"$tmp/loader.conf"
  # The console on the screen and on the first serial port (VMs, the boot test); gpt-auto off:
  # the fstab says what is mounted where.
  printf 'title Backup appliance\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=LABEL=%s ro console=tty0 console=ttyS0,115200 systemd.gpt_auto=0 loglevel=4\n' \
    "$BACKUPD_ROOT_LABEL" >"$tmp/backupd.conf"
  mcopy -i "$tmp/esp.img" "$tmp/loader.conf" ::/loader/loader.conf
  mcopy -i "$tmp/esp.img" "$tmp/backupd.conf" ::/loader/entries/backupd.conf

  common_ext4_image "$rootfs" "$tmp/root.img"

  # 1 MiB before the first partition, 1 MiB after the last for the backup GPT.
  local esp_start=2048 esp_size=$((AMD64_ESP_MB * 2048)) root_start root_size
  root_start=$((esp_start + esp_size))
  root_size=$((ROOT_MB * 2048))
  rm -f "$out"
  truncate -s $(((root_start + root_size + 2048) * 512)) "$out"
  sfdisk -q "$out" <<SFDISK
label: gpt
unit: sectors
first-lba: 2048
start=$esp_start, size=$esp_size, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"
start=$root_start, size=$root_size, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
SFDISK
  dd if="$tmp/esp.img" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$tmp/root.img" of="$out" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
  rm -rf "$tmp"
}
