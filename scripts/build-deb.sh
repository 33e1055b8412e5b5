#!/usr/bin/env bash
# scripts/build-deb.sh <arch>: the app as a Debian package, dist/backupd_<version>_<arch>.deb.
# A .deb is how the image builders install the app (appliance/provision.sh), and it makes later
# updates ordinary `apt install ./backupd_*.deb`. The app is built on the host (TypeScript and
# the panel are architecture-free); only the native modules depend on <arch>, and for a foreign
# arch scripts/cross-native.sh rebuilds them with the cross compiler.
#
# Layout under /usr/lib/backupd mirrors the repository, so the daemon finds everything where it
# does in a checkout: app/dist (the daemon), app/native/inotify (its addon, next to app/dist),
# web/build (the panel: runtime.ts's defaultWebRoot is app/dist/config/../../../web/build) and
# node_modules (production dependencies only).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

arch=${1:-$(dpkg --print-architecture)}
case $arch in
  amd64 | arm64) ;;
  *) die "unknown architecture '$arch': use amd64 or arm64" ;;
esac
host_arch=$(dpkg --print-architecture)

cd "$REPO_ROOT"
version=$(node -p 'require("./app/package.json").version')
out="$REPO_ROOT/dist/backupd_${version}_${arch}.deb"

if [[ -z ${BACKUPD_DEB_SKIP_BUILD:-} ]]; then
  say "building the daemon and the panel"
  npm run build --silent >/dev/null
fi
[[ -f app/dist/cli/main.js ]] || die "app/dist is missing: run npm run build"
[[ -f web/build/index.html ]] || die "web/build is missing: run npm run build"
[[ -f app/native/inotify/build/Release/inotify.node ]] ||
  die "the inotify addon is not built: run npm install (it runs node-gyp rebuild)"

stage=$(mktemp -d "${TMPDIR:-/tmp}/backupd-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
lib="$root/usr/lib/backupd"
mkdir -p "$lib/app/native/inotify/build/Release" "$lib/web" "$lib/node_modules" \
  "$root/usr/bin" "$root/DEBIAN"

say "staging the app ($arch)"
cp -a app/package.json app/dist "$lib/app/"
cp -a app/native/inotify/{package.json,index.js,index.d.ts,binding.gyp,src} "$lib/app/native/inotify/"
cp -a app/native/inotify/build/Release/inotify.node "$lib/app/native/inotify/build/Release/"
cp -a web/build "$lib/web/"
[[ -f README.md ]] && install -Dm644 README.md "$root/usr/share/doc/backupd/README.md"

# Production dependencies only, copied out of the worktree's node_modules (never modified): the
# exact versions the tests ran with, no registry needed. npm ls lists every package the app
# needs at run time; a package's own nested node_modules come with it.
npm ls --omit=dev --all --parseable -w app 2>/dev/null |
  sed -n "s#^$REPO_ROOT/node_modules/##p" |
  awk -F/ '{ print ($1 ~ /^@/) ? $1 "/" $2 : $1 }' | sort -u >"$stage/packages"
[[ -s $stage/packages ]] || die "npm ls found no production packages: run npm install first"
while read -r pkg; do
  if [[ $pkg == @backupd/inotify ]]; then continue; fi
  mkdir -p "$lib/node_modules/$(dirname "$pkg")"
  cp -a "node_modules/$pkg" "$lib/node_modules/$pkg"
done <"$stage/packages"
# The workspace link, as npm makes it in the repository.
mkdir -p "$lib/node_modules/@backupd"
ln -s ../../app/native/inotify "$lib/node_modules/@backupd/inotify"
# Build leftovers and test fixtures are not needed at run time (better-sqlite3's deps/ is the
# SQLite amalgamation source: 9 MB).
rm -rf "$lib/node_modules/better-sqlite3/deps" "$lib/node_modules/better-sqlite3/src" \
  "$lib/node_modules/better-sqlite3/build/Release/obj.target" \
  "$lib/node_modules/better-sqlite3/build/Release/.deps" \
  "$lib/node_modules/better-sqlite3/build/Release/test_extension.node"
find "$lib/node_modules" -name '*.md' -type f ! -iname 'license*' -delete

if [[ $arch != "$host_arch" ]]; then
  [[ -x $REPO_ROOT/scripts/cross-native.sh ]] ||
    die "building for $arch on $host_arch needs scripts/cross-native.sh (it rebuilds better-sqlite3 and the inotify addon with the cross compiler); it is not in this checkout yet"
  say "rebuilding the native modules for $arch"
  bash "$REPO_ROOT/scripts/cross-native.sh" "$arch" "$lib"
fi
# Every native module must now be for the target: a wrong one fails only at run time.
want=$([[ $arch == arm64 ]] && echo aarch64 || echo x86-64)
while IFS= read -r -d '' so; do
  file -L "$so" | grep -q "$want" || die "$so is not built for $arch: $(file -bL "$so")"
done < <(find -L "$lib" -name '*.node' -type f -print0)

# The command: Node with V8's young generation at 2 MiB per semi-space (docs/benchmarks.md,
# "Memory"), the same flag as systemd/backupd.service and scripts/start.sh.
cat >"$root/usr/bin/backupd" <<'EOF'
#!/bin/sh
exec /usr/bin/node --max-semi-space-size=2 /usr/lib/backupd/app/dist/cli/main.js "$@"
EOF
chmod 755 "$root/usr/bin/backupd"

# systemd units, udev rules and tmpfiles (the disk units arrive with the data-disk work).
for unit in systemd/*.service systemd/*.path systemd/*.timer; do
  [[ -f $unit ]] && install -Dm644 "$unit" "$root/usr/lib/systemd/system/$(basename "$unit")"
done
for rule in udev/*.rules; do
  [[ -f $rule ]] && install -Dm644 "$rule" "$root/usr/lib/udev/rules.d/$(basename "$rule")"
done
for conf in appliance/tmpfiles.d/*.conf; do
  [[ -f $conf ]] && install -Dm644 "$conf" "$root/usr/lib/tmpfiles.d/$(basename "$conf")"
done

size_kb=$(du -sk "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: backupd
Version: $version
Architecture: $arch
Maintainer: backupd developers <backupd@localhost>
Installed-Size: $size_kb
Depends: nodejs (>= 20), rclone, rsync, openssh-client, util-linux, e2fsprogs, fdisk, adduser
Section: admin
Priority: optional
Homepage: https://github.com/backupd/backupd
Description: backup appliance daemon for Google Drive and Google Photos
 Mirrors Google Drive and Google Photos onto a local disk and pushes every change,
 verified, to Amazon S3 and a European provider, keeping old versions in a dated trash.
EOF

# The daemon's own user: no shell, no home on the SD card beyond its state folder.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd backupd >/dev/null; then
    adduser --system --group --home /var/lib/backupd --no-create-home \
      --shell /usr/sbin/nologin --gecos 'backup appliance daemon' backupd >/dev/null
  fi
  install -d -o backupd -g backupd -m 0750 /var/lib/backupd
  install -d -o root -g backupd -m 0770 /etc/backupd
  if [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create backupd.conf >/dev/null 2>&1 || true
    systemctl daemon-reload >/dev/null 2>&1 || true
    udevadm control --reload >/dev/null 2>&1 || true
  fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop backupd.service >/dev/null 2>&1 || true
fi
EOF
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"

# Reproducible: every mtime is the time of the last commit that changed what is packed, so the
# same sources make the same .deb, byte for byte, and image/build.sh can reuse an image built
# from it (a commit elsewhere in the repository does not change it). Not a constant: the panel
# is served with Last-Modified from these mtimes.
SOURCE_DATE_EPOCH=$(git -C "$REPO_ROOT" log -1 --format=%ct -- app/src app/package.json \
  app/native web/src web/static web/package.json systemd udev appliance/tmpfiles.d README.md \
  package-lock.json 2>/dev/null || true)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$out")"
dpkg-deb --build --root-owner-group -Zzstd -z9 "$root" "$out" >/dev/null
say "built $out ($(du -h "$out" | cut -f1))"
