#!/usr/bin/env bash
# The dashboard's end-to-end browser test (e2e/dashboard/dashboard.test.mjs): builds
# tangle-node and tangle-wallet, installs playwright-core (exact version, package-lock.json;
# no browser download: it drives Debian's /usr/bin/chromium) and runs the test under node's
# test runner. Screenshots land in $SCREENSHOT_DIR (default target/dashboard-screenshots).
#
# Needs: node and npm, Debian's chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$TARGET_DIR/dashboard-screenshots}"
command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || {
  echo "chromium missing (apt-get install chromium)" >&2
  exit 2
}
echo "== building tangle-node and tangle-wallet"
cargo build --locked -p node --bin tangle-node -p wallet --bin tangle-wallet
export TANGLE_NODE="$TARGET_DIR/debug/tangle-node" TANGLE_WALLET="$TARGET_DIR/debug/tangle-wallet"
echo "== playwright-core (npm ci)"
(cd e2e/dashboard && npm ci --ignore-scripts --no-audit --no-fund)
echo "== dashboard end-to-end test (screenshots: $SCREENSHOT_DIR)"
cd e2e/dashboard
node --test --test-concurrency=1 dashboard.test.mjs
