#!/usr/bin/env bash
# The second command of the README (and all that .ci/run does): installs everything, builds,
# checks lint and types, starts the real test services on 127.0.0.1 and runs every test, the
# appliance's boot test in QEMU last (it builds the amd64 image, as root, or reuses it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_node
install_system_packages
# Debian's Chromium drives the panel in the end-to-end tests.
apt_install chromium fonts-dejavu-core
# The appliance tier builds the amd64 image and boots it in QEMU (app/test/appliance).
install_image_tools
bash "$REPO_ROOT/scripts/test-services.sh" install
install_npm_packages
build

cd "$REPO_ROOT"
say "lint and types"
npm run lint --silent
npm run typecheck -w app --silent
npm run check -w web --silent

say "starting the test services"
bash scripts/test-services.sh start
if [[ -z ${KEEP_TEST_SERVICES:-} ]]; then trap 'bash "$REPO_ROOT/scripts/test-services.sh" stop >/dev/null 2>&1 || true' EXIT; fi

say "running the tests"
cd "$REPO_ROOT/app"
report=$(mktemp)
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line that any CI reads.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
rm -f "$report"
exit "$status"
