#!/usr/bin/env bash
# scripts/cross-native.sh ARCH STAGED_DIR
#
# Rebuilds every native Node module of a staged production tree (the app as it goes into the
# .deb: STAGED_DIR/node_modules/better-sqlite3, STAGED_DIR/app/native/inotify, ...) for another
# architecture with the cross compiler, then checks that every .node file in the tree is built
# for it. Called by scripts/build-deb.sh for a foreign ARCH; the host builds the JavaScript.
#
# Only arm64 is known (the Raspberry Pi image): aarch64-linux-gnu-gcc/g++ from Debian's
# g++-aarch64-linux-gnu. The Node headers come from the host's node (nodedir=/usr in ~/.npmrc,
# or node-gyp's own download): they are the same for every architecture of one Node version,
# and Node 20's module ABI (NODE_MODULE_VERSION 115) is the same for every 20.x, so modules built
# against the host's 20.x load in Debian trixie's nodejs 20.x.
#
# CROSS_NATIVE_CHECK=1 also loads the built modules in an emulated arm64 node (see
# scripts/check-arm64-native.sh); it is the default when qemu-aarch64-static is installed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

usage() { die "usage: scripts/cross-native.sh arm64 STAGED_DIR (STAGED_DIR holds node_modules/ of the production tree)"; }
(($# == 2)) || usage
arch=$1 staged=$2
[[ -d $staged/node_modules ]] || die "$staged has no node_modules/: give the staged production tree (the directory that goes to /usr/lib/backupd)"
staged=$(cd "$staged" && pwd)

case $arch in
  arm64)
    triplet=aarch64-linux-gnu
    gyp_arch=arm64
    file_re='ARM aarch64'
    cross_pkg=g++-aarch64-linux-gnu
    ;;
  *) die "cross-native.sh knows only arm64, not '$arch' (amd64 is the host: build it natively)" ;;
esac

command -v "$triplet-g++" >/dev/null || apt_install "$cross_pkg" "gcc-$triplet"
command -v file >/dev/null || apt_install file

# node-gyp: the one npm bundles (the same one `npm install` runs).
node_gyp=${npm_config_node_gyp:-}
if [[ -z $node_gyp || ! -f $node_gyp ]]; then
  node_gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
fi
[[ -f $node_gyp ]] || die "node-gyp not found next to npm ($node_gyp): install npm from Debian (apt-get install npm)"
nodedir_args=()
# Local headers when the host's node ships them (no download: only the npm registry is reachable).
if [[ -f /usr/include/node/node.h ]]; then nodedir_args=(--nodedir=/usr); fi

# Every native module: a directory with binding.gyp and package.json, not a copy under a build
# tool's own tree. -P (find's default) does not follow the workspace symlinks of node_modules/@backupd,
# so each module is found once, in its real place.
mapfile -t modules < <(find "$staged" -name binding.gyp -not -path '*/node-gyp/*' -not -path '*/test/*' \
  -printf '%h\n' | while read -r d; do [[ -f $d/package.json ]] && echo "$d"; done | sort)
((${#modules[@]} > 0)) || die "no native module (binding.gyp) under $staged: is it the staged production tree?"

export CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar" STRIP="$triplet-strip"
export CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar
export npm_config_arch=$gyp_arch npm_config_target_arch=$gyp_arch
export JOBS=${JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pkg_field DIR FIELD: a field of DIR/package.json.
pkg_field() { node -p "require(process.argv[1] + '/package.json')[process.argv[2]] ?? ''" "$1" "$2"; }

for m in "${modules[@]}"; do
  rel=${m#"$staged"/}
  name=$(pkg_field "$m" name)
  version=$(pkg_field "$m" version)
  # Sources: a staged tree may have been pruned of them (better-sqlite3's deps/ and src/ are not
  # needed at run time), so the build uses the repository's own copy of the same name@version
  # when there is one (node_modules/<name>, which for a workspace package is a link to it), else
  # the staged copy. The build runs in a scratch copy: the staged tree only receives the .node.
  src=$m
  repo_pkg=$(readlink -f "$REPO_ROOT/node_modules/$name" 2>/dev/null || true)
  if [[ -n $repo_pkg && -f $repo_pkg/package.json && $(pkg_field "$repo_pkg" version) == "$version" ]]; then
    src=$repo_pkg
  fi
  say "cross-building $rel ($name@$version) for $arch"
  t0=$SECONDS
  b=$work/${name//\//_}
  mkdir -p "$b"
  tar -C "$src" --exclude=./build --exclude=./node_modules -cf - . | tar -C "$b" -xf -
  # Dependencies the build itself resolves (node-addon-api and the like) come from the source's
  # own node_modules or the repository's.
  export NODE_PATH="$src/node_modules:$REPO_ROOT/node_modules"
  log=$work/build.log
  if ! (cd "$b" && node "$node_gyp" rebuild --release --arch="$gyp_arch" "${nodedir_args[@]}" -j "$JOBS") >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "building $rel for $arch failed (log above; sources from $src); is $cross_pkg installed?"
  fi
  # Only build/Release/<name>.node is loaded at run time: objects, static libraries, makefiles
  # and better-sqlite3's test extension stay out of the package.
  built=()
  for f in "$b"/build/Release/*.node; do [[ $(basename "$f") == test_extension.node ]] || built+=("$f"); done
  ((${#built[@]} > 0)) || die "building $rel for $arch made no .node file"
  rm -rf "$m/build"
  mkdir -p "$m/build/Release"
  for f in "${built[@]}"; do
    "$STRIP" --strip-unneeded -o "$m/build/Release/$(basename "$f")" "$f"
  done
  echo "    $(basename -a "${built[@]}" | tr '\n' ' ')in $((SECONDS - t0)) s"
done

# Every .node in the tree must now be for ARCH: a prebuilt binary for the host (a package
# shipping its own .node with no binding.gyp) would fail only on the device, so it fails here.
bad=0
while IFS= read -r -d '' f; do
  desc=$(file -b "$f")
  if [[ $desc != *"$file_re"* ]]; then
    echo "error: ${f#"$staged"/} is not built for $arch: $desc" >&2
    bad=1
  fi
done < <(find "$staged" -name '*.node' -type f -print0)
((bad == 0)) || die "some native modules are not $arch (above): rebuild them from source or drop the package from the production tree"
say "every .node under $staged is $arch ($(find "$staged" -name '*.node' -type f | wc -l) files)"

if [[ ${CROSS_NATIVE_CHECK:-auto} == 1 || (${CROSS_NATIVE_CHECK:-auto} == auto && -x /usr/bin/qemu-aarch64-static) ]]; then
  bash "$REPO_ROOT/scripts/check-arm64-native.sh" "$staged"
fi
