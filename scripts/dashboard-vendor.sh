#!/usr/bin/env bash
# Rebuilds the dashboard's vendored front-end files (node/src/dashboard/vendor/) from the npm
# registry, at the exact versions of node/src/dashboard/package-lock.json:
#   uPlot (MIT): uPlot.iife.min.js, uPlot.min.css, uPlot.LICENSE
# The node compiles them into its one dashboard page (no CDN, no extra route). Run after
# changing a version in package.json (`npm install --package-lock-only` first), then commit
# vendor/ and the lock file. node_modules is left out of the repository.
set -euo pipefail
cd "$(dirname "$0")/../node/src/dashboard"
npm ci --ignore-scripts --no-audit --no-fund
cp node_modules/uplot/dist/uPlot.iife.min.js vendor/uPlot.iife.min.js
cp node_modules/uplot/dist/uPlot.min.css vendor/uPlot.min.css
cp node_modules/uplot/LICENSE vendor/uPlot.LICENSE
version="$(node -p 'require("./node_modules/uplot/package.json").version')"
echo "uPlot $version (npm package uplot) — built files from its dist/, unmodified; rebuilt by scripts/dashboard-vendor.sh" >vendor/README
rm -rf node_modules
echo "vendored uPlot $version into $(pwd)/vendor"
