#!/bin/bash
# Restart time of a node with a long history (issue #13: "restart with 10M transactions of
# history and keep_milestones = 60: healthy in under 3 s").
#
# Usage: bash scripts/restart-bench.sh [options]
#   --payments N     history to build, payments (default 10000000)
#   --keep N         keep_milestones (default 60); --archive keeps everything
#   --rate R         payments/s offered while building it (default 20000)
#   --restarts K     measured restarts per stop signal (default 5)
#   --signals "..."  how the node is stopped before each restart (default "INT TERM KILL")
#   --dir DIR        work directory (default ${TMPDIR:-/tmp}/restart-bench-<mode>-<N>); it
#                    is deleted at the end unless --keep-dir
#   --reuse          skip building the history: DIR already holds one (from --keep-dir)
#   --no-build       use the binaries in target/release as they are
#   --wait S         how long node-bench waits for the last confirmations before it stops
#                    the node (default 120); a short wait stops it with a full window of
#                    kept milestones, as a node restarted under load has
#   --no-genesis-copy  delete the node's binary copy of the genesis (DIR/db/genesis.bin)
#                    before each start, so every start parses the genesis TOML (the cost
#                    the copy saves)
#
# Builds the history with `node-bench --spawn target/release/tangle-node --rate R --payments
# N --keep-milestones KEEP --keep-data DIR` (a `tangle-node run` process fed over HTTP,
# stopped with SIGINT at the end), then, for each stop signal in turn (interleaved, so the
# history drifting by a few milestones per start affects all alike), K times: starts
# `tangle-node run --config DIR/node.toml` on that database and measures the wall time from
# exec to the first 200 from GET /health (polled every 10 ms; the API serves only once the
# store is restored), then stops it with that signal. One unmeasured start/stop per signal
# comes first, so each measured start follows a stop of its own kind. Prints every time,
# the median per signal, and what the node held (GET /api/v1/info).
set -euo pipefail
cd "$(dirname "$0")/.."

PAYMENTS=10000000 KEEP=60 RATE=20000 RESTARTS=5 SIGNALS="INT TERM KILL"
DIR= REUSE=0 BUILD=1 KEEP_DIR=0 GENESIS_COPY=1 WAIT=120
while [ $# -gt 0 ]; do
  case $1 in
    --payments) PAYMENTS=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --archive) KEEP=0; shift ;;
    --rate) RATE=$2; shift 2 ;;
    --restarts) RESTARTS=$2; shift 2 ;;
    --signals) SIGNALS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    --keep-dir) KEEP_DIR=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-genesis-copy) GENESIS_COPY=0; shift ;;
    --wait) WAIT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
MODE=$([ "$KEEP" = 0 ] && echo archive || echo "keep$KEEP")
DIR=${DIR:-${TMPDIR:-/tmp}/restart-bench-$MODE-$PAYMENTS}
BIN=${TANGLE_NODE:-target/release/tangle-node}   # env TANGLE_NODE: another build to time
BENCH=target/release/node-bench

if [ $BUILD = 1 ]; then
  cargo build --release -p node --bin tangle-node -p benches --bin node-bench
fi

pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  if [ $KEEP_DIR = 0 ] && [ $REUSE = 0 ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

echo "== restart-bench: $MODE, $PAYMENTS payments of history, $(date -u +%FT%TZ), $(nproc) cores, $(uname -r)"
if [ $REUSE = 0 ]; then
  rm -rf "$DIR"
  keep_args=()
  [ "$KEEP" != 0 ] && keep_args=(--keep-milestones "$KEEP")
  t=$SECONDS
  $BENCH --spawn $BIN --rate "$RATE" --payments "$PAYMENTS" --clients 32 --batch 64 \
    "${keep_args[@]}" --keep-data "$DIR" --timeout-s "$WAIT" 2>&1 | tee "$DIR.build.log" | grep -vE '^\s*[0-9]+ confirmed' || true
  echo "history built in $((SECONDS - t)) s"
fi
[ -f "$DIR/node.toml" ] || { echo "no node in $DIR" >&2; exit 1; }
echo "database: $(du -sh "$DIR/db" | cut -f1) ($(ls "$DIR/db" | grep -c '^transactions\.log' || true) log segment files); binary $BIN"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$port

now_ns() { date +%s%N; }

# Starts the node; sets $pid and $ms (exec to first 200 from /health).
start() {
  local t0 t1 code
  [ $GENESIS_COPY = 1 ] || rm -f "$DIR/db/genesis.bin"
  t0=$(now_ns)
  RUST_LOG=warn $BIN run --config "$DIR/node.toml" --api-addr 127.0.0.1:$port >>"$DIR.run.log" 2>&1 &
  pid=$!
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $URL/health || true)
    [ "$code" = 200 ] && break
    kill -0 $pid 2>/dev/null || { echo "node exited; see $DIR.run.log" >&2; tail -5 "$DIR.run.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(now_ns)
  ms=$(( (t1 - t0) / 1000000 ))
}

stop() {
  kill -"$1" $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  pid=
}

info() {
  curl -s $URL/api/v1/info | python3 -c 'import json,sys; i=json.load(sys.stdin); print("confirmed %d, oldest kept %d, %d transactions held" % (i["confirmed_milestone"], i["oldest_milestone"], i["transactions"]))'
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A times
for sig in $SIGNALS; do times[$sig]=""; done
for round in $(seq 0 "$RESTARTS"); do
  for sig in $SIGNALS; do
    start
    if [ "$round" = 0 ]; then
      echo "warm-up start before SIG$sig stops: ${ms} ms; $(info)"
    else
      times[$sig]="${times[$sig]} $ms"
      if [ "$round" = 1 ] || [ "$round" = "$RESTARTS" ]; then
        echo "SIG$sig round $round: ${ms} ms; $(info)"
      fi
    fi
    stop "$sig"
  done
done
for sig in $SIGNALS; do
  echo "RESULT $MODE payments=$PAYMENTS after SIG$sig: restart ms [${times[$sig]# }] median $(echo "${times[$sig]}" | median) ms"
done
