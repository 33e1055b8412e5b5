#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds, creates a configuration
# if there is none (a mirror and state under ./data, and a `local` destination standing for a
# second disk), and starts the daemon with its admin panel. No cloud account is needed.
#
#   BACKUPD_HOME   where config.yaml and data/ go (default: the repository)
#   BACKUPD_PORT   port of the API and panel for a new config (default 8080)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOME_DIR=${BACKUPD_HOME:-$REPO_ROOT}
CONFIG=${BACKUPD_CONFIG:-$HOME_DIR/config.yaml}

require_node
install_system_packages
install_npm_packages
build

if [[ ! -f $CONFIG ]]; then
  say "creating $CONFIG (a mirror under $HOME_DIR/data and a local destination)"
  mkdir -p "$(dirname "$CONFIG")"
  sed "s/api_port: 8080/api_port: ${BACKUPD_PORT:-8080}/" "$REPO_ROOT/scripts/default-config.yaml" >"$CONFIG"
  mkdir -p "$HOME_DIR/data/mirror/google-drive" "$HOME_DIR/data/mirror/google-photos" "$HOME_DIR/data/second-disk"
fi

say "starting backupd with $CONFIG"
# A 2 MiB young generation, as systemd/backupd.service sets it (docs/benchmarks.md, "Memory").
exec node --max-semi-space-size=2 "$REPO_ROOT/app/dist/cli/main.js" start --config "$CONFIG"
