# Shared by the scripts a newcomer runs: checks and installs what the project needs.
# Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

require_node() {
  command -v node >/dev/null || die "Node.js 20.19 or newer is needed: apt-get install nodejs npm (Debian 13) or see https://nodejs.org"
  local v
  v=$(node -p 'process.versions.node')
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
    die "Node.js $v is too old: 20.19 or newer is needed"
}

# apt_install PKG... : installs the Debian packages that are missing (apt-get update only if needed).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "please install: ${missing[*]} (this script knows only apt-get)"
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The daemon's own needs: rclone moves the data; rsync and ssh send deltas of large files changed
# in part to a Storage Box (app/src/push/rsync.ts); a compiler builds better-sqlite3.
install_system_packages() {
  apt_install rclone rsync openssh-client ca-certificates python3 make g++
}

# What builds the appliance images and boots them in QEMU for the boot test (image/build.sh,
# app/test/appliance): mmdebstrap and filesystem tools that need no loop device or mount, QEMU
# with UEFI firmware, qemu-user for the arm64 root, the cross compiler for arm64 native modules.
install_image_tools() {
  apt_install mmdebstrap debootstrap e2fsprogs dosfstools mtools fdisk qemu-system-x86 \
    qemu-system-arm qemu-user-static binfmt-support qemu-utils arch-test ovmf systemd-boot-efi \
    g++-aarch64-linux-gnu gcc-aarch64-linux-gnu dpkg-dev file openssh-client
}

install_npm_packages() {
  cd "$REPO_ROOT"
  if [[ -n ${CI:-} ]]; then
    say "npm ci"
    npm ci --no-audit --no-fund
  else
    say "npm install"
    npm install --no-audit --no-fund
  fi
}

build() {
  cd "$REPO_ROOT"
  say "building the daemon and the panel"
  npm run build --silent
}
