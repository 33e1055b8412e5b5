#!/usr/bin/env bash
# scripts/check-arm64-native.sh STAGED_DIR
#
# Proves that the arm64 native modules of a staged production tree load and work: Debian
# trixie's own arm64 nodejs (the one the image installs), run on this machine by
# qemu-aarch64-static, requires better-sqlite3 (an in-memory database answers a query) and the
# inotify addon (a watch sees a file created). `file` saying "ARM aarch64" proves the format,
# not that the module links against the symbols that node exports; this does.
#
# The arm64 node and its libraries are extracted (not installed: nothing runs under emulation)
# by mmdebstrap into image/.cache/node-arm64-trixie, once.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

(($# == 1)) || die "usage: scripts/check-arm64-native.sh STAGED_DIR"
staged=$(cd "$1" && pwd)
sysroot=${NODE_ARM64_SYSROOT:-$REPO_ROOT/image/.cache/node-arm64-trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

apt_install qemu-user-static mmdebstrap
qemu=/usr/bin/qemu-aarch64-static

if [[ ! -x $sysroot/usr/bin/node ]]; then
  say "extracting Debian trixie's arm64 nodejs into ${sysroot#"$REPO_ROOT"/}"
  rm -rf "$sysroot.tmp"
  mkdir -p "$(dirname "$sysroot")"
  # --variant=extract: the packages and their dependencies are unpacked, no maintainer script
  # runs, so no emulation is needed and it takes seconds.
  mmdebstrap --quiet --mode="$( (($(id -u) == 0)) && echo root || echo unshare)" --variant=extract \
    --architectures=arm64 --include=nodejs trixie "$sysroot.tmp" "$mirror"
  [[ -x $sysroot.tmp/usr/bin/node ]] || die "mmdebstrap did not extract usr/bin/node into $sysroot.tmp"
  # trixie is merged-/usr, but the /lib -> usr/lib links are made by a maintainer script that
  # extract does not run; node's PT_INTERP is /lib/ld-linux-aarch64.so.1.
  for d in bin sbin lib; do [[ -e $sysroot.tmp/$d ]] || ln -s "usr/$d" "$sysroot.tmp/$d"; done
  mv "$sysroot.tmp" "$sysroot"
fi

# The modules to load: found by their compiled file, not assumed at fixed paths.
sqlite_node=$(find "$staged" -path '*better-sqlite3/build/Release/better_sqlite3.node' -type f | head -n1)
inotify_dir=$(find "$staged" -path '*native/inotify/build/Release/inotify.node' -type f | head -n1)
[[ -n $sqlite_node ]] || die "no better-sqlite3/build/Release/better_sqlite3.node under $staged"
[[ -n $inotify_dir ]] || die "no native/inotify/build/Release/inotify.node under $staged"
sqlite_pkg=${sqlite_node%/build/Release/*}
inotify_pkg=${inotify_dir%/build/Release/*}

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat >"$probe/probe.cjs" <<'EOF'
// Runs inside the emulated arm64 node: load both modules through their packages' own entry points.
const fs = require('node:fs');
const path = require('node:path');
const [sqlitePkg, inotifyPkg, dir] = process.argv.slice(2);
const Database = require(sqlitePkg);
const db = new Database(':memory:');
db.exec('CREATE TABLE t (x INTEGER)');
db.prepare('INSERT INTO t VALUES (?)').run(42);
const row = db.prepare('SELECT x, sqlite_version() AS v FROM t').get();
if (row.x !== 42) throw new Error('sqlite answered ' + JSON.stringify(row));
db.close();
console.log(`better-sqlite3: in-memory database answered (SQLite ${row.v}) on ${process.arch}, node ${process.version}`);
import(path.join(inotifyPkg, 'index.js')).then((ino) => {
  const timer = setTimeout(() => {
    console.error('inotify: no event within 10 s');
    process.exit(1);
  }, 10000);
  const watcher = new ino.Inotify((events) => {
    const hit = events.find((e) => e.name === 'created.txt' && e.mask & ino.IN_CREATE);
    if (!hit) return;
    clearTimeout(timer);
    watcher.close();
    console.log('inotify: a watch saw created.txt being created');
  });
  watcher.addWatch(dir, ino.IN_CREATE | ino.IN_MOVED_TO);
  fs.writeFileSync(path.join(dir, 'created.txt'), 'x');
});
EOF
mkdir "$probe/watched"
say "loading the arm64 modules in Debian's arm64 node under $qemu"
# -L: the arm64 dynamic loader and libraries come from the extracted sysroot; the host paths
# given on the command line (the staged tree, the probe) do not exist there and are used as is.
"$qemu" -L "$sysroot" "$sysroot/usr/bin/node" "$probe/probe.cjs" "$sqlite_pkg" "$inotify_pkg" "$probe/watched" ||
  die "the arm64 native modules did not load in arm64 node (above)"
