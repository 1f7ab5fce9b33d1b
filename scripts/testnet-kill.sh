#!/bin/bash
# A k-of-n committee network of separate processes (issue #15): `tangle-node testnet`,
# faucet payments flowing, SIGKILL of the member that proposes next; checks that
# confirmations resume, that no acknowledged payment is lost and that the live nodes share
# one ledger digest, then restarts the killed member and checks it catches up. Prints the
# milestone gaps around the kill and the proposal-to-publication latencies (p50/p99) of the
# milestones published during the run.
#
# Usage: bash scripts/testnet-kill.sh [options]
#   --nodes N        committee members (default 4)
#   --threshold K    signatures per milestone (default 3)
#   --base-port P    API ports P..P+N-1, peering P+100.. (default 24265; must be free)
#   --seconds S      payments for S seconds in all; the kill comes after S/3 (default 30)
#   --interval MS    milestone interval (default 1000)
#   --bin PATH       tangle-node binary (default target/release/tangle-node, built if absent)
#   --dir DIR        work directory (default: a new temporary one, deleted at the end
#                    unless --keep-dir)
# Exits 1 if an acknowledged payment is not confirmed, digests differ, or milestones stop.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=4 K=3 BASE=24265 SECONDS_TOTAL=30 INTERVAL=1000 BIN=target/release/tangle-node
DIR= KEEP_DIR=0
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) NODES=$2; shift 2 ;;
    --threshold) K=$2; shift 2 ;;
    --base-port) BASE=$2; shift 2 ;;
    --seconds) SECONDS_TOTAL=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --keep-dir) KEEP_DIR=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || cargo build --release -p node --bin tangle-node
[ -n "$DIR" ] || DIR=$(mktemp -d "${TMPDIR:-/tmp}/testnet-kill.XXXXXX")
mkdir -p "$DIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$KEEP_DIR" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

api() { echo "http://127.0.0.1:$((BASE + $1))/api/v1"; }
field() { grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2- | tr -d '"'; }
confirmed() { curl -s --max-time 2 "$(api "$1")/info" | field confirmed_milestone; }

"$BIN" testnet --nodes "$NODES" --threshold "$K" --dir "$DIR/net" --base-port "$BASE" \
  --milestone-interval-ms "$INTERVAL" > "$DIR/testnet.txt"
start() {
  "$BIN" --log-format json run --config "$DIR/net/node-$1/node.toml" >> "$DIR/node-$1.log" 2>&1 &
  PIDS[$1]=$!
}
for i in $(seq 0 $((NODES - 1))); do start "$i"; done

wait_for() { # description, seconds, command...
  local what=$1 limit=$2; shift 2
  local t=0
  until "$@"; do
    sleep 0.2; t=$((t + 1))
    [ $t -lt $((limit * 5)) ] || { echo "FAIL: no $what after ${limit}s"; exit 1; }
  done
}
all_at_least() { for i in $(seq 0 $((NODES - 1))); do [ "$(confirmed "$i")" -ge "$1" ] 2>/dev/null || return 1; done; }
wait_for "three milestones on every node" 60 all_at_least 3

# Payments: faucet payments on node 0, one request at a time; acknowledged ids recorded.
ADDR=did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2
: > "$DIR/acked"
(
  end=$(( $(date +%s) + SECONDS_TOTAL ))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s --max-time 5 -X POST "$(api 0)/faucet" -H 'content-type: application/json' \
      -d "{\"address\":\"$ADDR\",\"amount\":1}" | field payload_id >> "$DIR/acked" || true
  done
) &
PAY=$!
sleep $((SECONDS_TOTAL / 3))

# SIGKILL the member proposing the next index (not node 0: it holds the faucet).
while :; do
  c=$(confirmed 0); p=$(( (c + 1) % NODES ))
  [ "$p" != 0 ] && break
  sleep 0.05
done
kill -9 "${PIDS[$p]}"
KILLED_AT=$(date +%s%3N)
echo "killed node $p (the proposer of milestone $((c + 1))) at milestone $c"
wait "$PAY"
sleep 3

live=()
for i in $(seq 0 $((NODES - 1))); do [ "$i" = "$p" ] || live+=("$i"); done
top=$(confirmed 0)
[ "$top" -gt "$c" ] || { echo "FAIL: no milestone after the kill"; exit 1; }
acked=$(grep -c . "$DIR/acked" || true)
lost=0
while read -r id; do
  [ -n "$id" ] || continue
  for i in "${live[@]}"; do
    s=$(curl -s "$(api "$i")/payloads/$id" | field status)
    if [ "$s" != confirmed ]; then
      echo "payload $id on node $i: $s"; lost=$((lost + 1)); break
    fi
  done
done < "$DIR/acked"
at=$top
for i in "${live[@]}"; do v=$(confirmed "$i"); [ "$v" -lt "$at" ] && at=$v; done
digests=$(for i in "${live[@]}"; do curl -s "$(api "$i")/milestones/$at" | field ledger_digest; done | sort -u | wc -l)

# Milestone gaps (timestamps) around the kill, on node 0.
ts=()
for m in $(seq $((c > 5 ? c - 5 : 1)) "$top"); do
  view=$(curl -s "$(api 0)/milestones/$m")
  ts+=("$m $(echo "$view" | field timestamp) $(echo "$view" | grep -o '"signers":\[[0-9,]*\]' | cut -d: -f2)")
done
echo "milestone timestamp gaps (ms) on node 0, index: gap [signers]"
prev=
for row in "${ts[@]}"; do
  set -- $row
  [ -n "$prev" ] && echo "  $1: $(( $2 - prev )) [$3]"
  prev=$2
done

# Restart the killed member: it catches up on the same ledger.
start "$p"
goal=$(( $(confirmed 0) + 2 ))
wait_for "the restarted member at milestone $goal" 60 all_at_least "$goal"
same=$(for i in $(seq 0 $((NODES - 1))); do curl -s "$(api "$i")/milestones/$goal" | field ledger_digest; done | sort -u | wc -l)

# Proposal-to-publication latencies of every published milestone (all logs).
cat "$DIR"/node-*.log | grep -o '"latency_ms":[0-9]*' | cut -d: -f2 | sort -n > "$DIR/latency"
n=$(wc -l < "$DIR/latency")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$DIR/latency"; }
echo "acknowledged payments: $acked, not confirmed on every live node: $lost"
echo "live nodes with one digest at milestone $at: $([ "$digests" = 1 ] && echo yes || echo NO)"
echo "all $NODES nodes with one digest at milestone $goal after the restart: $([ "$same" = 1 ] && echo yes || echo NO)"
echo "proposal-to-publication: $n milestones, p50 $(pct 50) ms, p99 $(pct 99) ms, max $(tail -1 "$DIR/latency") ms"
echo "killed at $KILLED_AT ms (epoch)"
[ "$lost" = 0 ] && [ "$digests" = 1 ] && [ "$same" = 1 ]
