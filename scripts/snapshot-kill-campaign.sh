#!/bin/bash
# SIGKILL `tangle-node snapshot create` at random moments; after every kill the final path
# must be absent or a snapshot that `snapshot inspect --genesis` verifies, and the node must
# start on the store and become healthy.
#
# Usage: bash scripts/snapshot-kill-campaign.sh [CYCLES] (default 50)
#   env PAYMENTS (default 200000): history of the store, built with node-bench --spawn
#   (a tangle-node run process with keep_milestones = 3, so the store is pruned and its
#   genesis funds ~PAYMENTS/1 accounts: the snapshot is large enough, several MB, for the
#   kills to land during the write); NO_BUILD=1 uses target/release as it is.
# Exit status 1 on any damaged final file or a store that does not come back healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=${1:-50}
PAYMENTS=${PAYMENTS:-200000}
BIN=target/release/tangle-node
DIR=${TMPDIR:-/tmp}/snapshot-kill-campaign
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -p node --bin tangle-node -p benches --bin node-bench
rm -rf "$DIR"; mkdir -p "$DIR"
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; true' EXIT

echo "== snapshot-kill-campaign: $CYCLES cycles, $(date -u +%FT%TZ), $(nproc) cores"
target/release/node-bench --spawn $BIN --rate 10000 --payments "$PAYMENTS" --clients 16 --batch 64 \
  --keep-milestones 3 --keep-data "$DIR/node" > "$DIR/build.log" 2>&1
grep -E 'confirmed \(applied\)|milestones  ' "$DIR/build.log" || true
CFG=$DIR/node/node.toml G=$DIR/node/genesis.toml OUT=$DIR/snap.tsnap
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

healthy() {
  RUST_LOG=warn $BIN run --config "$CFG" --api-addr 127.0.0.1:$port >> "$DIR/run.log" 2>&1 &
  pid=$!
  local i
  for i in $(seq 1 6000); do   # hang guard, 60 s
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:$port/health || true)" = 200 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
  done
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:$port/health || true)
  sleep 1.5   # let it apply a milestone or two, so the next snapshot differs
  kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; pid=
  [ "$code" = 200 ]
}

ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
# One uninterrupted create gives the range of kill delays: the whole run, and the window
# in which OUT.tmp exists (the write itself; before it the store is opened and read).
t0=$(ms_now)
$BIN snapshot create --config "$CFG" --out "$OUT" > "$DIR/create.log" 2>&1 &
cpid=$!
until [ -e "$OUT.tmp" ] || ! kill -0 $cpid 2>/dev/null; do :; done
t1=$(ms_now)
while [ -e "$OUT.tmp" ] && kill -0 $cpid 2>/dev/null; do :; done
t2=$(ms_now)
wait $cpid
full_ms=$((t2 - t0)) write_ms=$((t2 - t1))
$BIN snapshot inspect "$OUT" --genesis "$G" > /dev/null
echo "uninterrupted create: ${full_ms} ms, of which ~${write_ms} ms writing OUT.tmp; $(stat -c %s "$OUT") bytes; $(tail -1 "$DIR/create.log")"

bad=0 absent=0 complete=0 old_kept=0 leftovers=0 finished=0
for cycle in $(seq 1 "$CYCLES"); do
  # Odd cycles start without a final file, even ones with the previous complete one there.
  before=
  if [ $((cycle % 2)) = 1 ]; then
    rm -f "$OUT"
  else
    [ -e "$OUT" ] || $BIN snapshot create --config "$CFG" --out "$OUT" > /dev/null 2>&1
    before=$(md5sum < "$OUT")
  fi
  $BIN snapshot create --config "$CFG" --out "$OUT" > /dev/null 2>&1 &
  cpid=$!
  start_ms=$(ms_now)
  if [ $((cycle % 4)) -lt 2 ]; then
    # Anywhere in the run.
    delay_ms=$(( full_ms * RANDOM / 32767 ))
    where=run
  else
    # Within the write: once OUT.tmp appears.
    until [ -e "$OUT.tmp" ] || ! kill -0 $cpid 2>/dev/null; do :; done
    start_ms=$(ms_now)
    delay_ms=$(( write_ms * RANDOM / 32767 ))
    where=write
  fi
  # Wait for the delay, or for the create to end first: then the kill comes too late, and
  # the next delays of this kind are drawn from the shorter time it took (the machine is
  # shared: a create's duration varies several-fold).
  while [ $(( $(ms_now) - start_ms )) -lt $delay_ms ] && kill -0 $cpid 2>/dev/null && { [ $where = run ] || [ -e "$OUT.tmp" ]; }; do :; done
  took=$(( $(ms_now) - start_ms ))
  if kill -9 $cpid 2>/dev/null; then
    wait $cpid 2>/dev/null || true
  else
    wait $cpid 2>/dev/null || true; finished=$((finished+1))
    if [ $where = run ]; then full_ms=$(( took > 1 ? took : 1 )); else write_ms=$(( took > 1 ? took : 1 )); fi
  fi
  delay=$(awk -v m=$took 'BEGIN { printf "%.3f", m / 1000 }')
  [ -e "$OUT.tmp" ] && leftovers=$((leftovers+1))
  if [ ! -e "$OUT" ]; then
    absent=$((absent+1)); what=absent
  elif $BIN snapshot inspect "$OUT" --genesis "$G" > /dev/null 2> "$DIR/inspect.err"; then
    if [ -n "$before" ] && [ "$(md5sum < "$OUT")" = "$before" ]; then old_kept=$((old_kept+1)); what="previous kept"; else complete=$((complete+1)); what=complete; fi
  else
    bad=$((bad+1)); what="DAMAGED: $(head -1 "$DIR/inspect.err")"; cp "$OUT" "$DIR/damaged.$cycle"
  fi
  if healthy; then h=healthy; else h=UNHEALTHY; bad=$((bad+1)); fi
  echo "cycle $cycle: kill ${delay}s into the $where: final file $what; tmp left $([ -e "$OUT.tmp" ] && echo yes || echo no); node $h"
done
# After all that, an uninterrupted create still works over whatever was left.
$BIN snapshot create --config "$CFG" --out "$OUT" > /dev/null 2>&1 && $BIN snapshot inspect "$OUT" --genesis "$G" > /dev/null || bad=$((bad+1))
[ -e "$OUT.tmp" ] && { echo "a .tmp survived a successful create"; bad=$((bad+1)); }
echo "RESULT $CYCLES cycles: final file absent $absent, previous kept $old_kept, new complete $complete, damaged/unhealthy $bad; a .tmp left after $leftovers kills; $finished creates finished before the kill"
if [ $bad = 0 ]; then rm -rf "$DIR"; echo ok; else echo "FAILED; evidence in $DIR"; exit 1; fi
