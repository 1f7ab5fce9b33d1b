#!/usr/bin/env bash
# Crash campaign (RELIABILITY.md): SIGKILL a spawned `tangle-node dev` under mixed load at
# random moments, restart it on the same data directory and check after every restart that
# no acknowledged payload is lost or left undecided, that final statuses never change, that
# the supply is conserved and that milestones continue. Exits non-zero on any violation.
#
#   bash scripts/crash-campaign.sh [CYCLES] [crash-campaign options, e.g. --seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-20}"
shift || true
cargo build --release --locked -p node --bin tangle-node -p benches --bin crash-campaign
exec target/release/crash-campaign --cycles "$cycles" --node-bin target/release/tangle-node "$@"
