#!/usr/bin/env bash
# image/boot-arm64.sh [IMG]   (default image/out/backupd-arm64.img)
#
# The arm64 boot check: boots the Raspberry Pi image under qemu-system-aarch64 -M virt (in
# software, no KVM) with the kernel and initrd taken from the image's own FAT firmware partition
# (mtools, no mount) and the image as a virtio disk mounted as its root, forwards the panel's
# ports to 127.0.0.1, and waits for GET /api/health to answer {"status":"ok",...}.
# Prints the seconds from QEMU's start to the panel's answer; exits 0 only when it answered.
# The image is not modified (the disk is a snapshot). The serial console goes to
# image/out/boot-arm64.serial.log.
#
# Environment: BOOT_TIMEOUT (seconds, default 600), BOOT_SMP (default 2), BOOT_MEM (MiB, 1024).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

img=${1:-$REPO_ROOT/image/out/backupd-arm64.img}
[[ -f $img ]] || die "no image at $img: build it first with image/build.sh arm64"
timeout_s=${BOOT_TIMEOUT:-600}
out_dir=$REPO_ROOT/image/out
mkdir -p "$out_dir"
serial_log=$out_dir/boot-arm64.serial.log

apt_install qemu-system-arm mtools fdisk curl

work=$(mktemp -d)
qemu_pid=
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The firmware partition is the first MBR partition (FAT32): read vmlinuz and initrd.img from it.
fat_start=$(sfdisk --json "$img" | node -e 'const t=JSON.parse(require("fs").readFileSync(0,"utf8")).partitiontable; const p=t.partitions[0]; if(!p||!/^c$|^b$|^e$/.test(p.type)) process.exit(1); console.log(p.start)') ||
  die "$img does not start with a FAT firmware partition (MBR type c): is it the arm64 image?"
export MTOOLS_SKIP_CHECK=1
fat="$img@@$((fat_start * 512))"
# config.txt names them, as the Pi's own firmware reads it ("kernel=vmlinuz-<ver>", "initramfs initrd.img-<ver>").
mcopy -n -i "$fat" ::config.txt "$work/config.txt" || die "no config.txt on the firmware partition of $img"
kernel_file=$(sed -n 's/^kernel=//p' "$work/config.txt" | tail -n1)
initrd_file=$(awk '$1 == "initramfs" {print $2}' "$work/config.txt" | tail -n1)
[[ -n $kernel_file && -n $initrd_file ]] || die "config.txt on $img names no kernel= or initramfs line"
# The root as the Pi's firmware passes it (cmdline.txt, written by raspi-firmware's hook).
mcopy -n -i "$fat" ::cmdline.txt "$work/cmdline.txt" || die "no cmdline.txt on the firmware partition of $img"
root_arg=$(grep -o 'root=[^ ]*' "$work/cmdline.txt" | head -n1)
[[ -n $root_arg ]] || die "cmdline.txt on $img has no root="
mcopy -n -i "$fat" "::$kernel_file" "$work/vmlinuz" || die "no $kernel_file on the firmware partition of $img"
mcopy -n -i "$fat" "::$initrd_file" "$work/initrd.img" || die "no $initrd_file on the firmware partition of $img"
# Debian's arm64 vmlinuz is a gzip-compressed Image; hand QEMU the plain Image, which every
# QEMU version loads.
if [[ $(head -c2 "$work/vmlinuz" | od -An -tx1 | tr -d ' ') == 1f8b ]]; then
  zcat "$work/vmlinuz" >"$work/Image"
else
  mv "$work/vmlinuz" "$work/Image"
fi

# Two free local ports: the panel on 80 (what a person opens) and the daemon's own 8080.
read -r port80 port8080 < <(node -e '
const net=require("net"); const a=[];
const take=()=>{const s=net.createServer(); s.listen(0,"127.0.0.1",()=>{a.push(s); if(a.length<2) take(); else {console.log(a.map(x=>x.address().port).join(" ")); a.forEach(x=>x.close());}});};
take();')

say "booting $(basename "$img") (qemu-system-aarch64 -M virt, TCG; panel forwarded to 127.0.0.1:$port80 and :$port8080)"
start=$(date +%s.%N)
qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg -smp "${BOOT_SMP:-2}" -m "${BOOT_MEM:-1024}" \
  -display none -monitor none -serial "file:$serial_log" -no-reboot \
  -kernel "$work/Image" -initrd "$work/initrd.img" \
  -append "$root_arg rw rootwait console=ttyAMA0 net.ifnames=0 systemd.show_status=1" \
  -drive "file=$img,format=raw,if=none,id=hd0,snapshot=on" -device virtio-blk-pci,drive=hd0 \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port80-:80,hostfwd=tcp:127.0.0.1:$port8080-:8080" \
  -device virtio-net-pci,netdev=n0 \
  -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 &
qemu_pid=$!

answered=
deadline=$((SECONDS + timeout_s))
while ((SECONDS < deadline)); do
  kill -0 "$qemu_pid" 2>/dev/null || break
  for p in "$port80" "$port8080"; do
    body=$(curl -fsS --max-time 3 "http://127.0.0.1:$p/api/health" 2>/dev/null) || continue
    if [[ $body == *'"status":"ok"'* ]]; then
      answered=$p
      break 2
    fi
  done
  sleep 1
done
end=$(date +%s.%N)

if [[ -z $answered ]]; then
  echo "---- last lines of the serial console ($serial_log) ----" >&2
  tail -n 40 "$serial_log" >&2 || true
  if kill -0 "$qemu_pid" 2>/dev/null; then
    die "the panel did not answer /api/health within $timeout_s s"
  fi
  die "QEMU stopped before the panel answered"
fi
guest_port=$([[ $answered == "$port80" ]] && echo 80 || echo 8080)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
say "panel answered on guest port $guest_port: $body"
echo "boot-to-panel: $secs s"
